"""Sample text from a trained character model.

    python scripts/sample_lm.py checkpoint=outputs/lm/shakespeare-lstm/ckpt.pt temperature=0.8 prime="ROMEO:"
    python scripts/sample_lm.py checkpoint=... temperature=0     # argmax (greedy)
"""

from __future__ import annotations

import os

# Must run before torch loads OpenMP. On a shared machine, OpenMP threads that spin-wait for a
# descheduled sibling made each training step 10-20x slower here; sleeping costs little when idle.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from captioning.lm.model import load_lm  # noqa: E402
from captioning.lm.sample import sample  # noqa: E402


@hydra.main(version_base=None, config_path="../configs/lm", config_name="sample")
def main(cfg: DictConfig) -> None:
    """Print the prime followed by ``length`` sampled characters."""
    model, vocab = load_lm(cfg.checkpoint)
    text = sample(model, vocab, cfg.length, cfg.prime, cfg.temperature, cfg.seed, cfg.top_k)
    print(cfg.prime + text)


if __name__ == "__main__":
    main()
