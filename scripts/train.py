"""`python scripts/train.py ...` is `captioning-train ...`: see captioning/commands/train.py (or `captioning-train --help`).

A thin wrapper, kept so the commands in README.md and docs/ work from a checkout without installing the
console scripts; the command itself lives in the package.
"""

import sys

from captioning.commands.train import main

if __name__ == "__main__":
    sys.exit(main())
