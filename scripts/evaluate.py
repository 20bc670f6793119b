"""`python scripts/evaluate.py ...` is `captioning-evaluate ...`: see captioning/commands/evaluate.py (or `captioning-evaluate --help`).

A thin wrapper, kept so the commands in README.md and docs/ work from a checkout without installing the
console scripts; the command itself lives in the package.
"""

import sys

from captioning.commands.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
