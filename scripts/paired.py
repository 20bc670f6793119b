"""`python scripts/paired.py ...` is `captioning-paired ...`: see captioning/commands/paired.py (or `captioning-paired --help`).

A thin wrapper, kept so the commands in README.md and docs/ work from a checkout without installing the
console scripts; the command itself lives in the package.
"""

import sys

from captioning.commands.paired import main

if __name__ == "__main__":
    sys.exit(main())
