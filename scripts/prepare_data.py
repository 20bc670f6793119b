"""`python scripts/prepare_data.py ...` is `captioning-prepare-data ...`: see captioning/commands/prepare_data.py (or `captioning-prepare-data --help`).

A thin wrapper, kept so the commands in README.md and docs/ work from a checkout without installing the
console scripts; the command itself lives in the package.
"""

import sys

from captioning.commands.prepare_data import main

if __name__ == "__main__":
    sys.exit(main())
