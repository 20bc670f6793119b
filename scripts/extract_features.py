"""`python scripts/extract_features.py ...` is `captioning-extract ...`: see captioning/commands/extract_features.py (or `captioning-extract --help`).

A thin wrapper, kept so the commands in README.md and docs/ work from a checkout without installing the
console scripts; the command itself lives in the package.
"""

import sys

from captioning.commands.extract_features import main

if __name__ == "__main__":
    sys.exit(main())
