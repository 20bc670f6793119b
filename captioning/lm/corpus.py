"""Text corpora for the character model: reading files, the validation split, truncated-BPTT batches.

Batches for the recurrent cells follow char-rnn: the text is cut into ``B`` contiguous streams, one per
batch row, and each stream is read in consecutive chunks of ``seq_len`` characters. Row b of chunk i+1
continues row b of chunk i, so the recurrent state is carried from chunk to chunk (and detached between
them). A transformer carries nothing, so it trains on ``random_windows`` of its block size, as nanoGPT.
"""

from __future__ import annotations

import glob
import math
import os
import sysconfig
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Iterator, Sequence

import torch
from torch import Tensor

from captioning.lm.signals import LANGUAGES
from captioning.lm.vocab import CharVocab
from captioning.utils.schema import option

REPO_ROOT = Path(__file__).resolve().parents[2]
GLOB_CHARS = "*?["


def expand_placeholders(path: str) -> str:
    """Replace ``{stdlib}`` by this Python's standard-library folder (the python_source corpus) and ``~``."""
    return os.path.expanduser(path.replace("{stdlib}", sysconfig.get_paths()["stdlib"]))


def _candidates(path: str) -> list[Path]:
    """A relative path is tried against the working directory, then the repository root."""
    p = Path(expand_placeholders(path))
    return [p] if p.is_absolute() else [Path.cwd() / p, REPO_ROOT / p]


def resolve_source(paths: Sequence[str] | str, hint: str = "") -> str:
    """The first of ``paths`` that exists (a file or folder) or is a glob; else a clear error."""
    paths = [paths] if isinstance(paths, str) else list(paths)
    if not paths:
        raise ValueError("corpus has no path: set corpus.paths (a file, a folder or a glob)")
    for path in paths:
        if any(ch in path for ch in GLOB_CHARS):
            return expand_placeholders(path)
        for cand in _candidates(path):
            if cand.exists():
                return str(cand)
    tried = ", ".join(str(c) for p in paths for c in _candidates(p))
    raise FileNotFoundError(f"corpus not found; tried {tried}. {hint}".strip())


def list_files(source: str, pattern: str = "**/*", exclude: Sequence[str] = ()) -> list[Path]:
    """Files of a source (one file, every file matching ``pattern`` in a folder, or a glob), sorted."""
    src = Path(source)
    if src.is_file():
        files = [src]
    elif src.is_dir():
        files = sorted(p for p in src.glob(pattern) if p.is_file())
    else:
        files = sorted(Path(p) for p in glob.glob(source, recursive=True) if Path(p).is_file())
    files = [f for f in files if not any(fnmatch(str(f), ex) for ex in exclude)]
    if not files:
        raise FileNotFoundError(f"no files in corpus source {source!r} (pattern {pattern!r}, "
                                f"exclude {list(exclude)}): check corpus.paths and corpus.pattern")
    return files


def read_files(files: Sequence[Path], max_chars: int | None = None, errors: str = "replace") -> str:
    """Concatenate UTF-8 files (newline-separated) in order, stopping after ``max_chars`` characters."""
    parts, total = [], 0
    for f in files:
        text = f.read_text(encoding="utf-8", errors=errors)
        parts.append(text)
        total += len(text) + 1
        if max_chars is not None and total >= max_chars:
            break
    text = "\n".join(parts)
    return text[:max_chars] if max_chars is not None else text


@dataclass
class Corpus:
    """A text, its vocabulary and its train/validation ids (validation = the last fraction)."""

    text: str
    vocab: CharVocab
    train: Tensor
    val: Tensor

    @classmethod
    def from_text(cls, text: str, val_fraction: float = 0.1, vocab: CharVocab | None = None) -> "Corpus":
        """Split ``text``: the first 1 - val_fraction for training, the rest for validation."""
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        if len(text) < 2:
            raise ValueError(f"corpus too short ({len(text)} characters): need at least 2")
        vocab = vocab or CharVocab.build(text)
        ids = vocab.encode(text)
        n_train = len(ids) - int(len(ids) * val_fraction)
        return cls(text, vocab, ids[:n_train], ids[n_train:])


@dataclass
class CorpusConfig:
    """The `corpus` group (configs/lm/corpus/*.yaml): where the text comes from."""

    name: str = option("custom", "names the run (out_dir is outputs/lm/<name>-<cell>)")
    paths: list[str] = option([], "files, folders or globs, tried in order (relative: to the working directory, then "
                              "the repository); the first that exists is read; {stdlib} = Python's standard library")
    pattern: str = option("**/*", "the files read from a folder")
    exclude: list[str] = option([], "fnmatch patterns of files to leave out")
    max_chars: int | None = option(None, "read at most this many characters; null = every file", ge=2)
    language: str = option("text", "what the text is, for the cell search's signals", choices=LANGUAGES)
    hint: str = option("", "added to the error when no path exists: how to get the corpus")


def load_corpus(paths: Sequence[str] | str, pattern: str = "**/*", exclude: Sequence[str] = (),
                max_chars: int | None = None, val_fraction: float = 0.1, hint: str = "") -> Corpus:
    """Read a corpus from its parts (``corpus_from_config`` takes a whole ``CorpusConfig``)."""
    files = list_files(resolve_source(paths, hint), pattern, exclude)
    return Corpus.from_text(read_files(files, max_chars), val_fraction)


def corpus_from_config(corpus: CorpusConfig, val_fraction: float = 0.1) -> Corpus:
    """Read the corpus a configs/lm/corpus/*.yaml entry describes."""
    return load_corpus(list(corpus.paths), corpus.pattern, list(corpus.exclude), corpus.max_chars, val_fraction,
                       corpus.hint)


class StreamBatches:
    """Chunks of ``B`` parallel streams of ``data``: item i is (x, y), each [seq_len, B], y = x shifted."""

    def __init__(self, data: Tensor, batch_size: int, seq_len: int, drop_last: bool = True) -> None:
        if batch_size < 1 or seq_len < 1:
            raise ValueError(f"batch_size and seq_len must be >= 1, got {batch_size}, {seq_len}")
        stream_len = (len(data) - 1) // batch_size
        if stream_len < (seq_len if drop_last else 1):
            raise ValueError(f"text of {len(data)} characters is too short for {batch_size} streams of "
                             f"chunks of {seq_len}: lower batch_size or seq_len, or use a longer corpus")
        n = stream_len * batch_size
        # time-first [L, B]: column b is stream b; the fused kernel wants [T, B] anyway
        self.x = data[:n].view(batch_size, stream_len).t().contiguous()
        self.y = data[1:n + 1].view(batch_size, stream_len).t().contiguous()
        self.seq_len = seq_len
        self.n_chunks = stream_len // seq_len if drop_last else math.ceil(stream_len / seq_len)

    def __len__(self) -> int:
        return self.n_chunks

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        if not 0 <= i < self.n_chunks:
            raise IndexError(i)
        sl = slice(i * self.seq_len, (i + 1) * self.seq_len)
        return self.x[sl], self.y[sl]

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        return (self[i] for i in range(self.n_chunks))


def random_windows(data: Tensor, batch_size: int, window: int) -> tuple[Tensor, Tensor]:
    """``batch_size`` windows of ``window`` characters at random offsets (torch's global generator):
    x and y = x shifted by one, time-first [window, batch_size]."""
    if len(data) <= window:
        raise ValueError(f"text of {len(data)} characters is too short for windows of {window}: "
                         "lower the block size or use a longer corpus")
    starts = torch.randint(len(data) - window, (batch_size,))
    offsets = torch.arange(window)
    return data[starts + offsets[:, None]], data[starts + offsets[:, None] + 1]
