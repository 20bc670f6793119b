"""`python scripts/make_results.py ...` is `captioning-make-results ...`: see captioning/commands/make_results.py (or `captioning-make-results --help`).

A thin wrapper, kept so the commands in README.md and docs/ work from a checkout without installing the
console scripts; the command itself lives in the package.
"""

import sys

from captioning.commands.make_results import main

if __name__ == "__main__":
    sys.exit(main())
