"""A character vocabulary: every distinct Unicode character of a text gets an id."""

from __future__ import annotations

from typing import Iterable

import numpy as np
import torch
from torch import Tensor


class CharVocab:
    """Maps characters to ids 0..V-1 in sorted order (as char-rnn and nanoGPT do)."""

    def __init__(self, chars: Iterable[str]) -> None:
        self.itos: list[str] = sorted(set(chars))
        if not self.itos:
            raise ValueError("CharVocab needs at least one character: the text is empty")
        if any(len(c) != 1 for c in self.itos):
            raise ValueError("CharVocab entries must be single characters")
        self.stoi: dict[str, int] = {c: i for i, c in enumerate(self.itos)}
        self._codes = np.array([ord(c) for c in self.itos], dtype=np.uint32)  # sorted, as itos

    @classmethod
    def build(cls, text: str) -> "CharVocab":
        """The vocabulary of every character in ``text``."""
        return cls(text)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, char: str) -> bool:
        return char in self.stoi

    def encode(self, text: str) -> Tensor:
        """Ids of ``text`` as a LongTensor; unknown characters raise a clear error."""
        # vectorised over code points: a Python loop takes seconds on a 10 MB corpus
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        ids = np.searchsorted(self._codes, codes).clip(max=len(self) - 1)
        unknown = np.flatnonzero(self._codes[ids] != codes)
        if unknown.size:
            char = text[unknown[0]]
            raise ValueError(f"character {char!r} (at position {unknown[0]}) is not in the vocabulary of this "
                             f"model ({len(self)} characters): use only characters seen in training")
        return torch.from_numpy(ids.astype(np.int64))

    def decode(self, ids: Iterable[int] | Tensor) -> str:
        """Text of a sequence of ids."""
        if isinstance(ids, Tensor):
            ids = ids.tolist()
        return "".join(self.itos[i] for i in ids)

    def state_dict(self) -> dict:
        """A json-able description (the characters in id order)."""
        return {"itos": list(self.itos)}

    @classmethod
    def from_state_dict(cls, state: dict) -> "CharVocab":
        """Rebuild a vocabulary saved by ``state_dict``."""
        vocab = cls(state["itos"])
        if vocab.itos != list(state["itos"]):
            raise ValueError("vocabulary state is not sorted and unique: was it edited by hand?")
        return vocab
