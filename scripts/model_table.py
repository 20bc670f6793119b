"""`python scripts/model_table.py ...` is `captioning-model-table ...`: see captioning/commands/model_table.py (or `captioning-model-table --help`).

A thin wrapper, kept so the commands in README.md and docs/ work from a checkout without installing the
console scripts; the command itself lives in the package.
"""

import sys

from captioning.commands.model_table import main

if __name__ == "__main__":
    sys.exit(main())
