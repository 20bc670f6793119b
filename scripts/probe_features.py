"""`python scripts/probe_features.py ...` is `captioning-probe ...`: see captioning/commands/probe_features.py (or `captioning-probe --help`).

A thin wrapper, kept so the commands in README.md and docs/ work from a checkout without installing the
console scripts; the command itself lives in the package.
"""

import sys

from captioning.commands.probe_features import main

if __name__ == "__main__":
    sys.exit(main())
