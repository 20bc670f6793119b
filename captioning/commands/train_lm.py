"""Train a character-level language model (char-rnn) on a corpus.

    captioning-train-lm                                  # Tiny Shakespeare, LSTM, default schedule
    captioning-train-lm corpus=python_source cell=gru schedule=long
    captioning-train-lm schedule.max_seconds=70          # a time budget
    captioning-train-lm resume=true                      # continue from ${out_dir}/ckpt.pt
    OMP_WAIT_POLICY=ACTIVE captioning-train-lm           # on an idle machine: ~20% more steps/s

(options: captioning/configs/lm/lm.yaml.)
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

CONFIG_PATH, CONFIG_NAME = str(CONFIG_DIR / "lm"), "lm"


def register() -> None:
    """captioning/configs/lm/*.yaml extend the declared options: store them before Hydra composes."""
    from captioning.lm.config import register_schemas

    register_schemas()


def train_lm(cfg: Any) -> None:
    """Check every option, train, and print the validation loss (nats per character)."""
    from captioning.lm.config import LMRunConfig, check
    from captioning.lm.run import train_from_config

    result = train_from_config(check(LMRunConfig, cfg))  # every bad value named before any slow work
    print(f"validation loss {result.val_loss:.4f} nats/char after {result.steps} steps, {result.seconds:.1f} s "
          f"({result.train_chars_per_s:.0f} chars/s); checkpoint {result.checkpoint}")


main = hydra_command("captioning-train-lm", CONFIG_PATH, CONFIG_NAME, register, train_lm)

if __name__ == "__main__":
    sys.exit(main())
