"""Sample text from a trained character model.

    python scripts/sample_lm.py checkpoint=outputs/lm/shakespeare-lstm/ckpt.pt temperature=0.8 prime="ROMEO:"
    python scripts/sample_lm.py checkpoint=... temperature=0     # argmax (greedy)
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from captioning.lm.model import load_lm
from captioning.lm.sample import sample


@hydra.main(version_base=None, config_path="../configs/lm", config_name="sample")
def main(cfg: DictConfig) -> None:
    """Print the prime followed by ``length`` sampled characters."""
    model, vocab = load_lm(cfg.checkpoint)
    text = sample(model, vocab, cfg.length, cfg.prime, cfg.temperature, cfg.seed, cfg.top_k)
    print(cfg.prime + text)


if __name__ == "__main__":
    main()
