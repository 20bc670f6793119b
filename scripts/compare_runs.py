"""`python scripts/compare_runs.py ...` is `captioning-compare-runs ...`: see captioning/commands/compare_runs.py (or `captioning-compare-runs --help`).

A thin wrapper, kept so the commands in README.md and docs/ work from a checkout without installing the
console scripts; the command itself lives in the package.
"""

import sys

from captioning.commands.compare_runs import main

if __name__ == "__main__":
    sys.exit(main())
