"""`python scripts/render_attention.py ...` is `captioning-render-attention ...`: see captioning/commands/render_attention.py (or `captioning-render-attention --help`).

A thin wrapper, kept so the commands in README.md and docs/ work from a checkout without installing the
console scripts; the command itself lives in the package.
"""

import sys

from captioning.commands.render_attention import main

if __name__ == "__main__":
    sys.exit(main())
