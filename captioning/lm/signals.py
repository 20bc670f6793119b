"""Interpretable signals computed from text, and the search for cells that track them.

Each signal gives one number per character: its value *after* that character has been read, which is
what the hidden state at that step can know. So an opening quote is already inside the quotation and a
closing quote is outside it, a newline is at line position 0, and so on.
(Karpathy, Johnson & Fei-Fei 2015, "Visualizing and Understanding Recurrent Networks", section 4.)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

OPEN_BRACKETS, CLOSE_BRACKETS = "([{", ")]}"
# Comment syntax by language; quotes start strings in every code language here.
LINE_COMMENTS = {"python": ("#",), "c": ("//",), "latex": ("%",), "text": ()}
BLOCK_COMMENTS = {"c": ("/*", "*/")}
LANGUAGES = tuple(LINE_COMMENTS)  # text, python, c, latex
STRING_QUOTES = {"python": ('"""', "'''", '"', "'"), "c": ('"', "'")}


def in_quote(text: str, quote: str = '"') -> np.ndarray:
    """1 from an opening quote up to (not including) its closing quote, else 0."""
    flips = np.fromiter((ch == quote for ch in text), dtype=np.int64, count=len(text))
    return (np.cumsum(flips) % 2).astype(np.float64)


def line_position(text: str) -> np.ndarray:
    """Characters read since the last newline (a newline itself is 0)."""
    out, pos = np.zeros(len(text)), 0
    for i, ch in enumerate(text):
        pos = 0 if ch == "\n" else pos + 1
        out[i] = pos
    return out


def word_position(text: str) -> np.ndarray:
    """Letters read since the word began (0 on anything that is not a letter)."""
    out, pos = np.zeros(len(text)), 0
    for i, ch in enumerate(text):
        pos = pos + 1 if ch.isalpha() else 0
        out[i] = pos
    return out


def bracket_depth(text: str) -> np.ndarray:
    """Nesting depth of ( [ { after each character (never below 0)."""
    out, depth = np.zeros(len(text)), 0
    for i, ch in enumerate(text):
        if ch in OPEN_BRACKETS:
            depth += 1
        elif ch in CLOSE_BRACKETS:
            depth = max(0, depth - 1)
        out[i] = depth
    return out


def indent_depth(text: str, tab_width: int = 4) -> np.ndarray:
    """Leading whitespace of the current line in columns (tabs count ``tab_width``), 0 after a newline."""
    out, indent, leading = np.zeros(len(text)), 0, True
    for i, ch in enumerate(text):
        if ch == "\n":
            indent, leading = 0, True
        elif leading and ch in " \t":
            indent += tab_width if ch == "\t" else 1
        else:
            leading = False
        out[i] = indent
    return out


def code_regions(text: str, language: str) -> tuple[np.ndarray, np.ndarray]:
    """(in_comment, in_string) for code: a small lexer that knows escapes, so '#' in a string is no comment."""
    line = LINE_COMMENTS.get(language, ())
    block = BLOCK_COMMENTS.get(language)
    quotes = STRING_QUOTES.get(language, ())
    comment, string = np.zeros(len(text)), np.zeros(len(text))
    region, closer, i = None, "", 0  # region: None, comment or string (the array being marked)
    while i < len(text):
        step = 1
        if region is None:
            opener = next((q for q in quotes if text.startswith(q, i)), None)
            if opener:
                region, closer, step = string, opener, len(opener)
            elif any(text.startswith(c, i) for c in line):
                region, closer = comment, "\n"
            elif block and text.startswith(block[0], i):
                region, closer, step = comment, block[1], len(block[0])
        elif region is string and text[i] == "\\":
            step = 2  # an escaped character never closes the string
        elif text.startswith(closer, i):
            # the region ends once its closer has been read: mark all but the closer's last character
            region[i:i + len(closer) - 1] = 1
            region, i = None, i + len(closer)
            continue
        if region is not None:
            region[i:i + step] = 1
        i += step
    return comment, string


def text_signals(text: str, language: str = "text", quote: str = '"') -> dict[str, np.ndarray]:
    """Every signal that applies to ``language`` ('text', 'python', 'c' or 'latex')."""
    if language not in LINE_COMMENTS:
        raise ValueError(f"unknown language {language!r}: choose one of {sorted(LINE_COMMENTS)}")
    signals = {"in_quote": in_quote(text, quote), "line_position": line_position(text),
               "word_position": word_position(text), "bracket_depth": bracket_depth(text),
               "indent_depth": indent_depth(text)}
    if language != "text":
        signals["in_comment"], signals["in_string"] = code_regions(text, language)
    return signals


def correlations(acts: np.ndarray, signal: np.ndarray) -> np.ndarray:
    """Pearson correlation of every column of ``acts`` [N, C] with ``signal`` [N] (0 where undefined)."""
    a = acts - acts.mean(axis=0)
    s = signal - signal.mean()
    denom = np.sqrt((a * a).sum(axis=0) * (s * s).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (a * s[:, None]).sum(axis=0) / denom
    return np.nan_to_num(r, nan=0.0)


@dataclass
class CellMatch:
    """One cell's correlation with one signal; ``index`` is its column in the activation matrix."""

    signal: str
    label: str
    index: int
    r: float

    def to_dict(self) -> dict:
        return asdict(self)


def rank_cells(acts: np.ndarray, labels: list[str], signals: dict[str, np.ndarray],
               top_k: int = 5) -> dict[str, list[CellMatch]]:
    """For each signal, the ``top_k`` cells by |correlation|; signals constant on this text are skipped."""
    if acts.shape[1] != len(labels):
        raise ValueError(f"{acts.shape[1]} activation columns but {len(labels)} labels")
    ranking = {}
    for name, signal in signals.items():
        if len(signal) != acts.shape[0]:
            raise ValueError(f"signal {name} has {len(signal)} values for {acts.shape[0]} time steps")
        if np.ptp(signal) == 0:
            continue  # e.g. no quotation in the text: nothing to track
        r = correlations(acts.astype(np.float64), signal)
        order = np.argsort(-np.abs(r))[:top_k]
        ranking[name] = [CellMatch(name, labels[j], int(j), float(r[j])) for j in order]
    return ranking
