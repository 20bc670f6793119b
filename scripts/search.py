"""`python scripts/search.py ...` is `captioning-search ...`: see captioning/commands/search.py (or `captioning-search --help`).

A thin wrapper, kept so the commands in README.md and docs/ work from a checkout without installing the
console scripts; the command itself lives in the package.
"""

import sys

from captioning.commands.search import main

if __name__ == "__main__":
    sys.exit(main())
