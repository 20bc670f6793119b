"""Caption images: `python scripts/caption.py IMAGE_OR_FOLDER ... checkpoint=RUN_DIR_OR_PT [key=value ...]`.

Options (key=value): checkpoint (required: a run directory or a .pt file), method (beam | greedy |
sample), beam_size (3), length_alpha (0.0), temperature (1.0, for method=sample), show_beams (0: how
many top beams to print with their log-probabilities), seed (0). Any RGB, grayscale, RGBA or palette
image works; folders are searched for .jpg/.jpeg/.png/.bmp/.gif/.webp files.
"""

import sys

from captioning.cli import caption_main

if __name__ == "__main__":
    sys.exit(caption_main(sys.argv[1:]))
