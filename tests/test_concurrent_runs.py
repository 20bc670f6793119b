"""Two runs started at once on one data folder and one feature cache: the second waits for the first's
locks, then reuses its data and features; a run with other generator settings stops with one line."""

import logging
import multiprocessing
from pathlib import Path

import pytest

from captioning.data.datasets import load_dataset
from captioning.data.shapes import GeneratorSettingsError
from tests.conftest import tiny_cfg

SMALL = ["data.generator.splits={train: 16, val: 4, test: 0, test_novel: 0, val_novel: 0}",
         "data.generator.novel_splits=[]", "encoder=timm", "encoder.name=test_resnet", "encoder.weights=null",
         "encoder.image_size=32", "encoder.num_workers=0", "encoder.batch_size=4"]


def child_run(cfg, log_file: str, go) -> None:
    """One run's data and features, logged to ``log_file``; starts when ``go`` is set."""
    import torch

    from captioning.features.prepare import prepare
    from captioning.pipeline import run_options

    handler = logging.FileHandler(log_file)
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    logging.getLogger("captioning").addHandler(handler)
    logging.getLogger("captioning").setLevel(logging.INFO)
    go.wait()
    torch.manual_seed(0)  # a random-init encoder, seeded alike in both runs, has one cache key
    prepared = prepare(run_options(cfg).source, splits_needed=["train", "val"])
    handler.stream.write(f"ROWS {({name: len(f) for name, f in prepared.features.items()})}\n")
    handler.close()


def start_together(tmp_path: Path, monkeypatch, count: int = 2) -> list[tuple[int, str]]:
    """(exit code, log) of ``count`` forked runs on the same data root and cache, released at one moment."""
    monkeypatch.setenv("CAPTIONING_DATA", str(tmp_path / "data"))
    cfg = tiny_cfg(tmp_path, *SMALL)
    context = multiprocessing.get_context("fork")  # no second import of torch: the runs start in milliseconds
    go = context.Event()
    logs = [tmp_path / f"run{k}.log" for k in range(count)]
    runs = [context.Process(target=child_run, args=(cfg, str(log), go)) for log in logs]
    for run in runs:
        run.start()
    go.set()
    for run in runs:
        run.join(timeout=300)
        if run.is_alive():  # a run stuck on a lock: end it, and let the exit code say so
            run.kill()
            run.join()
    return [(run.exitcode, log.read_text() if log.exists() else "") for run, log in zip(runs, logs)]


def test_two_runs_at_once_generate_and_extract_once(tmp_path, monkeypatch):
    done = start_together(tmp_path, monkeypatch)
    logs = "\n".join(log for _, log in done)
    assert [code for code, _ in done] == [0, 0], logs
    assert all("ROWS {'train': 16, 'val': 4}" in log for _, log in done), logs
    assert logs.count("generated 20 shapes images") == 1, logs
    assert logs.count("extracted the features of 16 images of shapes_tiny-") == 1, logs
    assert logs.count("extracted the features of 4 images of shapes_tiny-") == 1, logs
    # a run that found the lock held said which lock it waited on (when the first run finishes before the second
    # reaches a lock, the second reuses without waiting: the counts above are the guarantee, not the wait)
    waited = [line for line in logs.splitlines() if "waiting for" in line]
    assert all("shapes_tiny.lock" in line or "features.lock" in line for line in waited), logs
    assert (tmp_path / "data" / "shapes_tiny.lock").exists()


def test_a_run_with_other_generator_settings_stops_with_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("CAPTIONING_DATA", str(tmp_path / "data"))
    load_dataset(tiny_cfg(tmp_path, *SMALL).data)
    with pytest.raises(GeneratorSettingsError, match=r"generator\.splits\.train: 16 there, 12 here.*data\.root="):
        load_dataset(tiny_cfg(tmp_path, *SMALL, "data.generator.splits.train=12").data)
