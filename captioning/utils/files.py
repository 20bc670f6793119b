"""Reading the json files a user hands to a command (metrics, results, histories): a file that is missing
or not json is named in the error, with what to do about it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class FileFormatError(ValueError):
    """A user's file that cannot be read as what it should be; the message names it."""


def read_json(path: str | os.PathLike, what: str = "json file") -> Any:
    """The parsed contents of ``path``; FileNotFoundError or FileFormatError naming it (and ``what`` it is)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} not found: check the path")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FileFormatError(f"{what} {path} is not valid json ({exc}); regenerate it or fix the path") from exc
