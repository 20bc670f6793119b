"""Progress bars with rate and ETA on a terminal, silent when output goes to a file or CI log."""

from __future__ import annotations

import os
import sys
from typing import Iterable

from tqdm import tqdm  # not tqdm.auto: in a notebook without ipywidgets that warns on import


def progress(iterable: Iterable, desc: str = "", total: int | None = None, **kwargs) -> tqdm:
    """tqdm over ``iterable``; disabled when stderr is not a TTY or CAPTIONING_PROGRESS=0."""
    enabled = sys.stderr.isatty() and os.environ.get("CAPTIONING_PROGRESS", "1") != "0"
    return tqdm(iterable, desc=desc, total=total, disable=not enabled, dynamic_ncols=True, leave=False, **kwargs)
