"""CNN-to-RNN image captioning and character-level language models on recurrent cells written from their equations.

``from captioning import Captioner`` is the user's API (captioning/captioner.py). It is imported on first
use (PEP 562), so ``import captioning`` stays light: the commands import the package for its config
folder before parsing their arguments, and ``--help`` must not wait for torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# The Hydra configs ship inside the package (package data), so every command finds them from any directory
# after a plain `pip install .`; users add their own folders with Hydra's `--config-dir DIR`.
CONFIG_DIR = Path(__file__).resolve().parent / "configs"

__all__ = ["CONFIG_DIR", "Caption", "Captioner", "__version__"]
LAZY = {"Caption", "Captioner"}  # names of captioning.captioner, imported (with torch) when first asked for

if TYPE_CHECKING:
    from captioning.captioner import Caption, Captioner


def __getattr__(name: str) -> Any:
    """``Captioner`` and ``Caption`` from captioning.captioner, imported on first access."""
    if name in LAZY:
        from captioning import captioner

        return getattr(captioner, name)
    raise AttributeError(f"module 'captioning' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | LAZY)
