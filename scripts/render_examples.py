"""`python scripts/render_examples.py ...` is `captioning-render-examples ...`: see captioning/commands/render_examples.py (or `captioning-render-examples --help`).

A thin wrapper, kept so the commands in README.md and docs/ work from a checkout without installing the
console scripts; the command itself lives in the package.
"""

import sys

from captioning.commands.render_examples import main

if __name__ == "__main__":
    sys.exit(main())
