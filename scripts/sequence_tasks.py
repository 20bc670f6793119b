"""`python scripts/sequence_tasks.py ...` is `captioning-sequence-tasks ...`: see captioning/commands/sequence_tasks.py (or `captioning-sequence-tasks --help`).

A thin wrapper, kept so the commands in README.md and docs/ work from a checkout without installing the
console scripts; the command itself lives in the package.
"""

import sys

from captioning.commands.sequence_tasks import main

if __name__ == "__main__":
    sys.exit(main())
