"""The main job end to end on the tiny shapes set: artifacts, exact resume, the caption CLI and API."""

import json

import pytest
import torch

from captioning.captioner import Captioner
from captioning.models.checkpoint import load_checkpoint
from captioning.pipeline import run, run_options
from tests.conftest import tiny_cfg


def test_main_job_writes_metrics_checkpoints_and_reports(tiny_run):
    run_dir, results = tiny_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics) >= {"test", "test_novel", "nearest_neighbour/test", "most_frequent/test_novel", "_run"}
    for split in ("test", "test_novel"):
        assert 0.0 <= metrics[split]["Bleu_4"] <= 1.0
        assert {"acc_colour", "acc_shape", "acc_count"} <= set(metrics[split])
        assert (run_dir / "eval" / f"results_{split}.json").is_file()
        assert (run_dir / "eval" / f"failures_{split}.html").is_file()
    for name in ("best.pt", "last.pt"):
        ckpt = load_checkpoint(run_dir / "checkpoints" / name)
        assert ckpt["vocab"]["itos"][:4] == ["<pad>", "<start>", "<end>", "<unk>"]
        assert ckpt["model"]["name"] == "show_tell" and ckpt["format_version"] == 2
    # training state lives in last.pt only: best.pt is what captioning needs
    assert "optimizer" in load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert "optimizer" not in load_checkpoint(run_dir / "checkpoints" / "best.pt")
    history = json.loads((run_dir / "history.json").read_text())
    assert len(history["epochs"]) == 2 and history["epochs"][1]["train_loss"] < history["epochs"][0]["train_loss"]


def test_resume_is_bitwise_identical_to_an_uninterrupted_run(tiny_root, tiny_run):
    straight_dir, _ = tiny_run
    part_dir = tiny_root / "part"
    # stop after one epoch (resume=auto in a new run directory: a fresh start) ...
    run(run_options(tiny_cfg(tiny_root, "schedule.stages.cross_entropy.epochs=1", "resume=auto")), part_dir)
    # ... then continue the same run to two epochs (resume=auto: its own checkpoints/last.pt)
    run(run_options(tiny_cfg(tiny_root, "resume=auto")), part_dir)
    a = load_checkpoint(straight_dir / "checkpoints" / "last.pt")["weights"]
    b = load_checkpoint(part_dir / "checkpoints" / "last.pt")["weights"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_captioner_api_and_cli_caption_images(tiny_run, tiny_root, capsys):
    from PIL import Image

    from captioning.commands.caption import main as caption_main

    run_dir, _ = tiny_run
    images = sorted((tiny_root / "data" / "shapes_tiny" / "images" / "test").glob("*.png"))[:3]
    captioner = Captioner.from_checkpoint(run_dir)
    caps = captioner.caption(images, method="beam", beam_size=3, keep_beams=2)
    assert len(caps) == 3 and all(c.text and len(c.beams) == 2 for c in caps)
    # odd-but-valid modes work: grayscale, RGBA and palette images
    odd = [Image.open(images[0]).convert(m) for m in ("L", "RGBA", "P")]
    assert len(captioner.caption(odd, method="greedy")) == 3
    assert caption_main([str(images[0]), f"checkpoint={run_dir}", "keep_beams=2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(str(images[0])) and len(out) == 3
    bad = tiny_root / "not_an_image.png"
    bad.write_text("hello")
    assert caption_main([str(bad), f"checkpoint={run_dir}"]) == 1


def test_impossible_config_values_fail_before_any_work(tiny_root):
    with pytest.raises(ValueError, match="beam_size"):
        run(run_options(tiny_cfg(tiny_root, "decoding.beam_size=0")), tiny_root / "never")
    with pytest.raises(ValueError, match="hidden_size"):
        run(run_options(tiny_cfg(tiny_root, "model.hidden_size=-4")), tiny_root / "never")
    assert not (tiny_root / "never").exists()
