"""`python scripts/caption.py ...` is `captioning-caption ...`: see captioning/commands/caption.py (or `captioning-caption --help`).

A thin wrapper, kept so the commands in README.md and docs/ work from a checkout without installing the
console scripts; the command itself lives in the package.
"""

import sys

from captioning.commands.caption import main

if __name__ == "__main__":
    sys.exit(main())
