"""Sample text from a trained character model.

    captioning-sample-lm checkpoint=outputs/lm/shakespeare-lstm/ckpt.pt temperature=0.8 prime="ROMEO:"
    captioning-sample-lm checkpoint=... temperature=0     # argmax (greedy)

(options: captioning/configs/lm/sample.yaml.)
"""

from __future__ import annotations

import os
import sys
from typing import Any

# Must run before torch loads OpenMP. On a shared machine, OpenMP threads that spin-wait for a
# descheduled sibling made each training step 10-20x slower here; sleeping costs little when idle.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from captioning import CONFIG_DIR  # noqa: E402
from captioning.commands.cli import hydra_command  # noqa: E402

CONFIG_PATH, CONFIG_NAME = str(CONFIG_DIR / "lm"), "sample"


def register() -> None:
    """captioning/configs/lm/sample.yaml extends the declared options: store them before Hydra composes."""
    from captioning.lm.config import register_schemas

    register_schemas()


def sample_lm(cfg: Any) -> None:
    """Print the prime followed by ``length`` sampled characters."""
    from captioning.lm.config import SampleConfig, check
    from captioning.lm.model import load_lm
    from captioning.lm.sample import sample

    opts: SampleConfig = check(SampleConfig, cfg)  # every bad value named before loading
    model, vocab = load_lm(opts.checkpoint)
    text = sample(model, vocab, opts.length, opts.prime, opts.temperature, opts.seed, opts.top_k)
    print(opts.prime + text)


main = hydra_command("captioning-sample-lm", CONFIG_PATH, CONFIG_NAME, register, sample_lm)

if __name__ == "__main__":
    sys.exit(main())
