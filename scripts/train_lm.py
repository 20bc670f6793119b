"""`python scripts/train_lm.py ...` is `captioning-train-lm ...`: see captioning/commands/train_lm.py (or `captioning-train-lm --help`).

A thin wrapper, kept so the commands in README.md and docs/ work from a checkout without installing the
console scripts; the command itself lives in the package.
"""

import sys

from captioning.commands.train_lm import main

if __name__ == "__main__":
    sys.exit(main())
