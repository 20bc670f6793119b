"""`python scripts/sample_lm.py ...` is `captioning-sample-lm ...`: see captioning/commands/sample_lm.py (or `captioning-sample-lm --help`).

A thin wrapper, kept so the commands in README.md and docs/ work from a checkout without installing the
console scripts; the command itself lives in the package.
"""

import sys

from captioning.commands.sample_lm import main

if __name__ == "__main__":
    sys.exit(main())
