"""logger=wandb in offline mode: a smoke training, then its history read back from the run directory."""

import json
import os

import pytest

pytest.importorskip("wandb", reason="the optional wandb extra is not installed: pip install -e \".[wandb]\"")

from captioning.loggers import build_logger  # noqa: E402 (after the skip)
from captioning.pipeline import run, run_options  # noqa: E402
from captioning.evaluation.scoring import EvaluateConfig, MetricsConfig  # noqa: E402
from captioning.utils.schema import build, plain  # noqa: E402
from tests.conftest import tiny_cfg  # noqa: E402
from tests.wandb_offline import _records, read_offline_run  # noqa: E402


@pytest.fixture(scope="module")
def wandb_run(tiny_root, tmp_path_factory):
    home = tmp_path_factory.mktemp("wandb_home")  # W&B's own cache/staging folders, not the user's
    saved = {k: os.environ.get(k) for k in ("WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_MODE")}
    os.environ.update(WANDB_DATA_DIR=str(home / "data"), WANDB_CACHE_DIR=str(home / "cache"),
                      WANDB_CONFIG_DIR=str(home / "config"))
    os.environ.pop("WANDB_MODE", None)  # the config's default must be offline on its own
    try:
        cfg = tiny_cfg(tiny_root, "logger=wandb", "logger.samples_per_epoch=3", "logger.log_checkpoint=true",
                       "evaluate.baselines=[]")
        run_dir = tmp_path_factory.mktemp("wandb_run")
        logger = build_logger(cfg.logger, str(run_dir), plain(cfg), build(EvaluateConfig, cfg.evaluate),
                              build(MetricsConfig, cfg.metrics))
        try:
            results = run(run_options(cfg), run_dir, logger)
        finally:
            logger.finish()
            logger.finish()  # closing twice is harmless
        yield run_dir, results
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def test_offline_run_records_config_losses_val_bleu_tables_and_summary(wandb_run):
    run_dir, results = wandb_run
    assert list(run_dir.glob("wandb/offline-run-*"))  # offline: written under the run directory, nothing sent
    wb = read_offline_run(run_dir)
    assert wb.config["data"]["name"] == "shapes_tiny" and wb.config["logger"]["mode"] == "offline"
    history = json.loads((run_dir / "history.json").read_text())
    steps = [row for row in wb.history if "train/loss" in row]
    assert len(steps) == 2 * 20 and all(row["lr"] > 0 for row in steps)  # 64 images x 5 captions / 16 per batch
    val = [row["val/Bleu_4"] for row in wb.history if "val/Bleu_4" in row]
    assert val == [e["val_bleu4"] for e in history["epochs"]]
    assert wb.summary["val/Bleu_4"] == {"max": pytest.approx(max(val))}  # the best epoch's, not the last's
    samples = [row for row in wb.history if "samples/val/nrows" in row]
    assert [row["samples/val/nrows"] for row in samples] == [3, 3]  # one table per epoch
    failures = {k: v for row in wb.history for k, v in row.items() if k.startswith("failures/")}
    assert failures["failures/test/nrows"] == 16 + 12, failures  # worst 16 (all) + random 12
    assert failures["failures/test_novel/_type"] == "table-file", [sorted(r) for r in wb.history[-4:]]
    assert wb.summary["test/Bleu_4"] == pytest.approx(results["test"]["Bleu_4"])
    assert wb.summary["run/best_epoch"] == history["best_epoch"]
    assert any(name.startswith("model-") for name in wb.artifacts)  # logger.log_checkpoint=true


def test_bad_mode_and_foreign_files_are_refused(tiny_root, tmp_path):
    with pytest.raises(ValueError, match="logger.mode"):
        build_logger(tiny_cfg(tiny_root, "logger=wandb", "logger.mode=online_please").logger, str(tmp_path))
    with pytest.raises(ValueError, match="W&B"):
        _records(b"not a wandb file")
    with pytest.raises(FileNotFoundError, match="logger=wandb"):
        read_offline_run(tmp_path)
