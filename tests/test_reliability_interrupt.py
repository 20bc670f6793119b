"""Interrupted training loses nothing: SIGINT/SIGTERM finish the step and save the exact position, a kill -9
costs at most `checkpoint_every_steps` steps, and resuming gives bitwise the weights of an uninterrupted run.

The killed runs are real `captioning-train` processes; the test holds the child at a chosen step (it waits
while a marker file exists) so that the signal lands exactly where the test wants it, however busy the CPU.
"""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import captioning.training.loop as train_mod
from captioning.utils.interrupts import Interrupted
from captioning.models.checkpoint import load_checkpoint
from captioning.pipeline import run_options
from captioning.training.loop import train
from tests.conftest import TINY, tiny_cfg

REPO = Path(__file__).resolve().parents[1]
CHILD = """
import os, runpy, sys, time
import captioning.training.loop as t

mark, hold_at, real, calls = {mark!r}, {hold_at}, t.caption_loss, [0]

def loss(*args, **kwargs):
    # at training step `hold_at` (1-based, counted over the whole run): tell the test, wait while it signals
    calls[0] += 1
    if calls[0] == hold_at:
        with open(mark + ".tmp", "w") as f:
            f.write(str(calls[0]))
        os.replace(mark + ".tmp", mark)
        deadline = time.monotonic() + 120
        while os.path.exists(mark) and time.monotonic() < deadline:
            time.sleep(0.01)
    return real(*args, **kwargs)

t.caption_loss = loss
sys.argv = ["captioning-train", *{args!r}]
runpy.run_module("captioning.commands.train", run_name="__main__")
"""



def weights(run_dir: Path) -> dict:
    return load_checkpoint(run_dir / "checkpoints" / "last.pt")["weights"]


def identical(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def position(run_dir: Path) -> tuple[int, int]:
    ckpt = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    return ckpt["epoch"], ckpt["step"]


@pytest.fixture(scope="module")
def straight(tiny_root, tiny_prepared):
    """(run dir, history, steps per epoch) of the uninterrupted 2-epoch tiny run every test compares with."""
    run_dir = tiny_root / "reliability_straight"
    history = train(run_options(tiny_cfg(tiny_root)).training, tiny_prepared, run_dir)
    n_captions = sum(len(r.captions) for r in tiny_prepared.splits["train"])
    return run_dir, history, math.ceil(n_captions / tiny_cfg(tiny_root).schedule.stages.cross_entropy.batch_size)


def start_child(tiny_root: Path, prepared, run_dir: Path, hold_at: int,
                *overrides: str) -> tuple[subprocess.Popen, Path]:
    """captioning-train on the tiny set in a subprocess, held at training step ``hold_at``."""
    mark = run_dir.parent / f"{run_dir.name}.held"
    # the very images (and so the cached features) of ``prepared``, whatever CAPTIONING_DATA says by now
    data_root = Path(prepared.splits["train"][0].path).parents[2]
    args = [*TINY, "data.eval_splits=[]", "num_threads=1",
            f"data.root={data_root}", f"cache_dir={tiny_root / 'cache'}", f"hydra.run.dir={run_dir}", *overrides]
    code = CHILD.format(mark=str(mark), hold_at=hold_at, args=args)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300  # only a guard against a hung child, not a timing assertion
    while not mark.exists():
        if child.poll() is not None or time.monotonic() > deadline:
            child.kill()
            pytest.fail(f"the training process ended before step {hold_at}:\n{child.communicate()[0]}")
        time.sleep(0.05)
    return child, mark


def test_sigterm_saves_the_exact_position_and_resume_is_bitwise_identical(tiny_root, tiny_prepared, straight):
    straight_dir, straight_history, steps = straight
    run_dir = tiny_root / "reliability_sigterm"
    child, mark = start_child(tiny_root, tiny_prepared, run_dir, hold_at=steps + 3)  # mid-way through epoch 2
    child.send_signal(signal.SIGTERM)
    mark.unlink()  # let the held step finish: the handler has already run
    out = child.communicate(timeout=300)[0]
    assert child.returncode == 128 + signal.SIGTERM, out
    assert "SIGTERM received" in out and f"resume={run_dir}" in out
    assert position(run_dir) == (1, 3)  # the step under way when the signal came was finished and saved
    assert not (run_dir / "metrics.json").exists()  # no evaluation of a half-trained model

    history = train(run_options(tiny_cfg(tiny_root, f"resume={run_dir}")).training, tiny_prepared, run_dir)
    assert identical(weights(run_dir), weights(straight_dir))
    # the interrupted epoch's mean loss counts the steps from before the interruption too
    assert [e["train_loss"] for e in history["epochs"]] == [e["train_loss"] for e in straight_history["epochs"]]


def test_kill_9_loses_at_most_checkpoint_every_steps(tiny_root, tiny_prepared, straight):
    straight_dir, _, steps = straight
    run_dir, every, hold_at = tiny_root / "reliability_kill9", 4, steps + 7
    child, _ = start_child(tiny_root, tiny_prepared, run_dir, hold_at, f"schedule.stages.cross_entropy.checkpoint_every_steps={every}")
    epoch, step = position(run_dir)  # written before the held step began
    child.kill()
    child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL
    done = epoch * steps + step
    assert epoch == 1 and 0 < step and hold_at - 1 - every < done <= hold_at - 1
    train(run_options(tiny_cfg(tiny_root, f"resume={run_dir}")).training, tiny_prepared, run_dir)
    assert identical(weights(run_dir), weights(straight_dir))


def _signal_at(monkeypatch, at: int, signum: int, times: int = 1) -> None:
    """Make the training loop send itself ``signum`` (``times`` times) during its step number ``at``."""
    real, calls = train_mod.caption_loss, [0]

    def loss(*args, **kwargs):
        calls[0] += 1
        if calls[0] == at:
            for _ in range(times):
                os.kill(os.getpid(), signum)
                stop = signal.getsignal(signum).__self__  # the run's GracefulStop
                deadline = time.monotonic() + 10
                while not stop.requested and time.monotonic() < deadline:  # one delivery at a time
                    time.sleep(0.001)
        return real(*args, **kwargs)

    monkeypatch.setattr(train_mod, "caption_loss", loss)


def test_ctrl_c_in_process_stops_after_the_step_and_restores_the_handlers(tiny_root, tiny_prepared, straight,
                                                                         monkeypatch):
    straight_dir, _, steps = straight
    run_dir, before = tiny_root / "reliability_sigint", signal.getsignal(signal.SIGINT)
    _signal_at(monkeypatch, 5, signal.SIGINT)
    with pytest.raises(Interrupted) as info:
        train(run_options(tiny_cfg(tiny_root)).training, tiny_prepared, run_dir)
    assert info.value.code == 130 and f"resume={run_dir}" in str(info.value)
    assert signal.getsignal(signal.SIGINT) is before and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert position(run_dir) == (0, 5)
    monkeypatch.undo()
    train(run_options(tiny_cfg(tiny_root, f"resume={run_dir}")).training, tiny_prepared, run_dir)
    assert identical(weights(run_dir), weights(straight_dir))


def test_a_second_ctrl_c_aborts_at_once_and_keeps_the_last_checkpoint(tiny_root, tiny_prepared, monkeypatch):
    run_dir = tiny_root / "reliability_double_sigint"
    train(run_options(tiny_cfg(tiny_root, "schedule.stages.cross_entropy.epochs=1")).training, tiny_prepared, run_dir)
    saved = (run_dir / "checkpoints" / "last.pt").read_bytes()
    _signal_at(monkeypatch, 3, signal.SIGINT, times=2)
    with pytest.raises(KeyboardInterrupt):
        train(run_options(tiny_cfg(tiny_root, f"resume={run_dir}")).training, tiny_prepared, run_dir)
    assert (run_dir / "checkpoints" / "last.pt").read_bytes() == saved
    assert not list((run_dir / "checkpoints").glob(".*.tmp"))


def test_a_signal_during_validation_stops_at_the_epoch_boundary(tiny_root, tiny_prepared, straight, monkeypatch):
    straight_dir, _, _ = straight
    run_dir = tiny_root / "reliability_sigterm_validation"
    real = train_mod.validate

    def validate(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(train_mod, "validate", validate)
    with pytest.raises(Interrupted) as info:
        train(run_options(tiny_cfg(tiny_root)).training, tiny_prepared, run_dir)
    assert info.value.code == 143 and position(run_dir) == (1, 0)
    assert json.loads((run_dir / "history.json").read_text())["epochs"][0]["epoch"] == 1
    monkeypatch.undo()
    train(run_options(tiny_cfg(tiny_root, f"resume={run_dir}")).training, tiny_prepared, run_dir)
    assert identical(weights(run_dir), weights(straight_dir))


def test_sigusr1_before_a_time_limit_saves_and_resume_auto_continues_exactly(tiny_root, tiny_prepared, straight,
                                                                              monkeypatch):
    # SLURM (submitit's signal_delay_s) sends SIGUSR1 before the time limit; a requeued job runs with resume=auto
    straight_dir, _, steps = straight
    run_dir, before = tiny_root / "reliability_sigusr1", signal.getsignal(signal.SIGUSR1)
    _signal_at(monkeypatch, steps + 2, signal.SIGUSR1)
    with pytest.raises(Interrupted) as info:
        train(run_options(tiny_cfg(tiny_root, "resume=auto")).training,
              tiny_prepared, run_dir)  # no last.pt yet: a fresh start
    assert info.value.code == 128 + signal.SIGUSR1 and f"resume={run_dir}" in str(info.value)
    assert signal.getsignal(signal.SIGUSR1) is before
    assert position(run_dir) == (1, 2)
    monkeypatch.undo()
    train(run_options(tiny_cfg(tiny_root, "resume=auto")).training,
          tiny_prepared, run_dir)  # the same command again picks it up
    assert identical(weights(run_dir), weights(straight_dir))


def test_resume_auto_starts_fresh_without_a_last_checkpoint(tiny_root, tmp_path):
    cfg = tiny_cfg(tiny_root, "resume=auto")
    assert train_mod.load_resume_point(cfg.resume, tmp_path / "checkpoints", ["cross_entropy"]) is None
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "best.pt").write_bytes(b"")  # only last.pt counts
    assert train_mod.load_resume_point(cfg.resume, tmp_path / "checkpoints", ["cross_entropy"]) is None


def test_a_stopped_run_reaches_another_process_as_itself():
    """A run stopped in a pool worker (make_results jobs=2) is pickled back to the parent: signal, message and exit
    status survive (the parent stopped with a TypeError, unable to rebuild it)."""
    import pickle

    again = pickle.loads(pickle.dumps(Interrupted(signal.SIGINT, "stopped in stage cross_entropy")))
    assert isinstance(again, Interrupted) and again.signum == signal.SIGINT and again.code == 130
    assert str(again) == "stopped in stage cross_entropy"
