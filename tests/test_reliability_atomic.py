"""Outputs are written to a temp file and renamed (captioning.utils.io): a writer killed at any moment leaves the
previous file whole, never half of the new one."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import captioning.utils.io as io_mod
from captioning.utils.io import save_json

REPO = Path(__file__).resolve().parents[1]


class _Dies:
    """A file object that writes part of what it is given, then dies (as a kill would, mid-write)."""

    def __init__(self, f):
        self._f = f

    def write(self, data):
        self._f.write(data[: max(1, len(data) // 2)])
        self._f.flush()
        raise KeyboardInterrupt("killed mid-write")

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self._f.__exit__(*exc)


def _write_json(path, version):
    save_json({"version": version, "words": ["a"] * 1000}, path)


def _write_checkpoint(path, version):
    from tests.conftest import show_tell
    from captioning.models.checkpoint import save_checkpoint
    from captioning.text.vocab import Vocabulary

    decoder = show_tell(4, 6, cell="gru", embed_dim=4, hidden_size=4 + version)
    save_checkpoint(path, decoder, Vocabulary(["a", "b"]), {}, "", epoch=version)


def _write_markdown(path, version):
    from captioning.utils.report import update_section

    update_section(path, "results", f"version {version}\n" + "row\n" * 500)


def _write_png(path, version):
    from matplotlib.figure import Figure

    from captioning.nn.viz import save_figure

    fig = Figure(figsize=(2, 2))
    fig.add_subplot().plot([0, version, 1])
    save_figure(fig, path)


WRITERS = {"metrics.json": _write_json, "last.pt": _write_checkpoint, "results.md": _write_markdown,
           "curve.png": _write_png}


@pytest.mark.parametrize("name", WRITERS)
def test_a_writer_killed_mid_write_leaves_the_old_file_whole(name, tmp_path, monkeypatch):
    path = tmp_path / name
    WRITERS[name](path, 1)
    before = path.read_bytes()
    real_fdopen = os.fdopen
    monkeypatch.setattr(io_mod.os, "fdopen", lambda *a, **k: _Dies(real_fdopen(*a, **k)))
    with pytest.raises(KeyboardInterrupt):
        WRITERS[name](path, 2)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # the temp file is cleaned up too


def test_a_failed_rename_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "history.json"
    save_json({"epochs": 1}, path)

    def replace(*args):
        raise OSError("disk full")

    monkeypatch.setattr(io_mod.os, "replace", replace)
    with pytest.raises(OSError):
        save_json({"epochs": 2}, path)
    assert json.loads(path.read_text()) == {"epochs": 1} and len(list(tmp_path.iterdir())) == 1


WRITER_LOOP = """
import sys
from captioning.utils.io import save_json
for version in range(10**6):
    save_json({"version": version, "data": [version] * 200_000}, sys.argv[1])
    print(version, flush=True)
"""


def test_kill_9_at_random_moments_leaves_a_whole_file(tmp_path):
    path, rng = tmp_path / "metrics.json", random.Random(0)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for attempt in range(4):
        child = subprocess.Popen([sys.executable, "-c", WRITER_LOOP, str(path)], stdout=subprocess.PIPE,
                                 text=True, env=env)
        for _ in range(2 + attempt):  # let it finish a few versions, then kill it somewhere in the next
            assert child.stdout.readline(), "the writer died on its own"
        time.sleep(rng.uniform(0, 0.05))
        child.send_signal(signal.SIGKILL)
        child.wait()
        data = json.loads(path.read_text())  # parses: the file is some whole version
        assert data["version"] >= 1 + attempt and set(data["data"]) == {data["version"]}
