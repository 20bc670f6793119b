"""CNN-to-RNN image captioning and character-level language models on recurrent cells written from their equations."""

from pathlib import Path

__version__ = "0.1.0"

# The Hydra configs ship inside the package (package data), so every command finds them from any directory
# after a plain `pip install .`; users add their own folders with Hydra's `--config-dir DIR`.
CONFIG_DIR = Path(__file__).resolve().parent / "configs"
