"""Reading an offline W&B run back, for the tests: its history, summary and config straight from the
``.wandb`` file under ``<run dir>/wandb/offline-run-*``, without syncing.

The file format is W&B's own and private (it may change with a wandb release); only the tests read it, so
the reader lives here rather than in the package.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class OfflineRun:
    """What an offline W&B run recorded: history rows (one dict per step), final summary, config."""

    path: Path
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    artifacts: list[str] = field(default_factory=list)  # names of the artifacts logged by name (e.g. model-<id>)


# W&B's .wandb file: a 7-byte file header, then a LevelDB-style log (32 KiB blocks counted from the start
# of the file, records of [crc32 of type+data, length, type] + data, split across blocks when needed)
_BLOCK, _HEADER = 32768, 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def _records(data: bytes) -> list[bytes]:
    """The payloads of a LevelDB log (after W&B's 7-byte file header), records joined across blocks."""
    if data[:4] != b":W&B":
        raise ValueError("not a W&B run file (expected the ':W&B' header)")
    out, pending, pos = [], b"", _HEADER
    while pos + _HEADER <= len(data):
        if _BLOCK - pos % _BLOCK < _HEADER:  # too little room left for a header: the block is padding
            pos += _BLOCK - pos % _BLOCK
            continue
        crc, length, kind = struct.unpack("<IHB", data[pos : pos + _HEADER])
        chunk, pos = data[pos + _HEADER : pos + _HEADER + length], pos + _HEADER + length
        if len(chunk) < length or zlib.crc32(bytes([kind]) + chunk) != crc:
            break  # a torn tail (the run was killed mid-write): keep what came before, as wandb sync does
        if kind == _FULL:
            out.append(chunk)
        elif kind == _FIRST:
            pending = chunk
        elif kind == _MIDDLE:
            pending += chunk
        elif kind == _LAST:
            out.append(pending + chunk)
    return out


def _items(items) -> dict[str, Any]:
    return {(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in items}


def find_offline_runs(run_dir: str | Path) -> list[Path]:
    """The ``.wandb`` files of every W&B run under ``run_dir`` (oldest first)."""
    return sorted(Path(run_dir).glob("wandb/*run-*/run-*.wandb"))


def read_offline_run(path: str | Path) -> OfflineRun:
    """History, summary and config of a run: a ``.wandb`` file, or a run directory (its latest W&B run)."""
    from wandb.proto import wandb_internal_pb2

    path = Path(path)
    if path.is_dir():
        files = find_offline_runs(path)
        if not files:
            raise FileNotFoundError(f"no W&B run under {path}/wandb: was it trained with logger=wandb?")
        path = files[-1]
    run = OfflineRun(path)
    for payload in _records(path.read_bytes()):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        kind = record.WhichOneof("record_type")
        if kind == "history":
            run.history.append(_items(record.history.item))
        elif kind == "summary":
            run.summary.update(_items(record.summary.update))
        elif kind == "config":
            run.config.update(_items(record.config.update))
        elif kind == "artifact":
            run.artifacts.append(record.artifact.name)
        elif kind == "run":
            run.config.update(_items(record.run.config.update))
    run.config.pop("_wandb", None)
    return run
