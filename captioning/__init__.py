"""CNN-to-RNN image captioning and character-level language models on recurrent cells written from their equations."""

__version__ = "0.1.0"
