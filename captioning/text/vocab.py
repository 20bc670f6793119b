"""Word vocabulary for captions: special tokens, a minimum word count, encode/decode, a json-able state."""

from __future__ import annotations

from collections import Counter
from typing import Any, Iterable, Sequence

PAD, START, END, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<start>", "<end>", "<unk>")
STATE_FORMAT = 1  # bump when the state dict layout changes; from_state_dict refuses newer ones


class VocabularyError(ValueError):
    """A vocabulary state that cannot be used (wrong format, corrupted, from a newer version)."""


class Vocabulary:
    """Maps words to ids and back; ids 0..3 are ``<pad> <start> <end> <unk>``."""

    def __init__(self, words: Sequence[str], min_count: int = 1) -> None:
        """Build from the ordinary (non-special) words, in id order starting at 4."""
        self.itos: list[str] = list(SPECIALS) + list(words)
        self.stoi: dict[str, int] = {w: i for i, w in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            dupes = sorted(w for w, n in Counter(self.itos).items() if n > 1)
            raise VocabularyError(f"vocabulary has duplicate words {dupes[:5]}")
        self.min_count = min_count

    @classmethod
    def build(cls, token_lists: Iterable[Sequence[str]], min_count: int = 5) -> "Vocabulary":
        """Keep words seen at least ``min_count`` times; most frequent first, ties alphabetical."""
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {min_count}")
        counts = Counter(t for tokens in token_lists for t in tokens)
        for special in SPECIALS:  # a caption literally containing "<unk>" must not shadow the special
            counts.pop(special, None)
        kept = [w for w, n in counts.items() if n >= min_count]
        kept.sort(key=lambda w: (-counts[w], w))  # deterministic regardless of caption order
        return cls(kept, min_count)

    @classmethod
    def from_captions(cls, captions: Iterable[str], min_count: int = 5) -> "Vocabulary":
        """Tokenise raw captions the COCO way, then ``build``."""
        from captioning.text.tokenizer import tokenize

        return cls.build((tokenize(c) for c in captions), min_count)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, word: str) -> bool:
        return word in self.stoi

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.itos == other.itos

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} words, min_count={self.min_count})"

    def encode(self, tokens: Sequence[str], max_len: int) -> list[int]:
        """``[START] + ids[:max_len] + [END]`` (unpadded); unknown words become UNK."""
        ids = [self.stoi.get(t, UNK) for t in tokens[:max_len]]
        return [START, *ids, END]

    def decode(self, ids: Iterable[int]) -> str:
        """Words joined by spaces, stopping at END and skipping START/PAD."""
        words = []
        for i in ids:
            i = int(i)
            if i == END:
                break
            if i in (START, PAD):
                continue
            words.append(self.itos[i] if 0 <= i < len(self.itos) else SPECIALS[UNK])
        return " ".join(words)

    def state_dict(self) -> dict[str, Any]:
        """A json-able description that ``from_state_dict`` restores exactly."""
        return {"format": STATE_FORMAT, "itos": list(self.itos), "min_count": self.min_count}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> "Vocabulary":
        """Restore a vocabulary saved by ``state_dict``; raise VocabularyError when it is unusable."""
        if not isinstance(state, dict) or not isinstance(state.get("itos"), list):
            raise VocabularyError("vocabulary state must be a dict with an 'itos' list of words")
        fmt = state.get("format", STATE_FORMAT)
        if not isinstance(fmt, int) or fmt > STATE_FORMAT:
            raise VocabularyError(
                f"vocabulary state has format {fmt!r}, this code reads format <= {STATE_FORMAT}: "
                "upgrade the captioning package"
            )
        itos = state["itos"]
        if tuple(itos[: len(SPECIALS)]) != SPECIALS or not all(isinstance(w, str) for w in itos):
            raise VocabularyError(f"vocabulary state must start with {list(SPECIALS)} and hold only strings")
        return cls(itos[len(SPECIALS) :], int(state.get("min_count", 1)))
