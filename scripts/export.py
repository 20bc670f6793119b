"""`python scripts/export.py ...` is `captioning-export ...`: see captioning/commands/export.py (or `captioning-export --help`).

A thin wrapper, kept so the commands in README.md and docs/ work from a checkout without installing the
console scripts; the command itself lives in the package.
"""

import sys

from captioning.commands.export import main

if __name__ == "__main__":
    sys.exit(main())
