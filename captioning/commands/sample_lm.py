"""Sample text from a trained character model.

    captioning-sample-lm checkpoint=outputs/lm/shakespeare-lstm/ckpt.pt temperature=0.8 prime="ROMEO:"
    captioning-sample-lm checkpoint=... temperature=0     # argmax (greedy)

(`python scripts/sample_lm.py ...` is the same command; options: captioning/configs/lm/sample.yaml.)
"""

from __future__ import annotations

import os

# Must run before torch loads OpenMP. On a shared machine, OpenMP threads that spin-wait for a
# descheduled sibling made each training step 10-20x slower here; sleeping costs little when idle.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from captioning import CONFIG_DIR  # noqa: E402
from captioning.lm.config import SampleConfig, check, register_schemas, sample_problems  # noqa: E402
from captioning.lm.model import load_lm  # noqa: E402
from captioning.lm.sample import sample  # noqa: E402

register_schemas()  # captioning/configs/lm/sample.yaml extends the declared options: store them before Hydra composes
CONFIG_PATH, CONFIG_NAME = str(CONFIG_DIR / "lm"), "sample"


@hydra.main(version_base=None, config_path=CONFIG_PATH, config_name=CONFIG_NAME)
def main(cfg: DictConfig) -> None:
    """Print the prime followed by ``length`` sampled characters."""
    opts: SampleConfig = check(SampleConfig, cfg, sample_problems)  # every bad value named before loading
    model, vocab = load_lm(opts.checkpoint)
    text = sample(model, vocab, opts.length, opts.prime, opts.temperature, opts.seed, opts.top_k)
    print(opts.prime + text)


if __name__ == "__main__":
    main()
