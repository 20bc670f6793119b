"""`python scripts/visualize_cells.py ...` is `captioning-visualize-cells ...`: see captioning/commands/visualize_cells.py (or `captioning-visualize-cells --help`).

A thin wrapper, kept so the commands in README.md and docs/ work from a checkout without installing the
console scripts; the command itself lives in the package.
"""

import sys

from captioning.commands.visualize_cells import main

if __name__ == "__main__":
    sys.exit(main())
