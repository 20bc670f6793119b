"""A checkpoint that cannot be used is a CheckpointError naming the problem, never a silent garbage caption:
flipped bits, truncation, foreign files, malformed contents, another encoder or feature size, and a resume
with another cell, size or batch order. (Round trip, newer format and mixed vocabulary: test_show_tell.py.)"""

import copy
import random

import pytest
import torch

from captioning.commands.caption import main as caption_main
from captioning.captioner import Captioner
from captioning.models.checkpoint import CheckpointError, model_from_checkpoint, load_checkpoint
from captioning.pipeline import run_options
from captioning.training.loop import train
from tests.conftest import tiny_cfg



def _load(path):
    """Everything a caption needs from a checkpoint file: its decoder and vocabulary."""
    return model_from_checkpoint(load_checkpoint(path))


def test_flipped_bits_are_detected_or_harmless(tiny_checkpoint, tmp_path):
    """torch.load does not check CRCs; load_checkpoint does, so no flip yields different weights."""
    data, rng = tiny_checkpoint.read_bytes(), random.Random(0)
    reference = _load(tiny_checkpoint)[0].state_dict()
    detected = 0
    for _ in range(60):
        flipped = bytearray(data)
        flipped[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        (tmp_path / "flipped.pt").write_bytes(bytes(flipped))
        try:
            state = _load(tmp_path / "flipped.pt")[0].state_dict()
        except CheckpointError:
            detected += 1
            continue
        assert all(torch.equal(state[k], reference[k]) for k in reference)  # the flip hit padding
    assert detected > 40


@pytest.mark.parametrize("keep", [0, 1, 100, 0.5, -1])
def test_truncated_files_fail_clearly(tiny_checkpoint, tmp_path, keep):
    data = tiny_checkpoint.read_bytes()
    n = int(len(data) * keep) if isinstance(keep, float) else keep % len(data)
    (tmp_path / "cut.pt").write_bytes(data[:n])
    with pytest.raises(CheckpointError, match="corrupted or truncated"):
        load_checkpoint(tmp_path / "cut.pt")


def test_foreign_files_fail_clearly(tmp_path):
    (tmp_path / "notes.pt").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupted or truncated"):
        load_checkpoint(tmp_path / "notes.pt")
    torch.save(torch.nn.Linear(2, 2).state_dict(), tmp_path / "state_dict.pt")
    with pytest.raises(CheckpointError, match="not a captioning checkpoint"):
        load_checkpoint(tmp_path / "state_dict.pt")
    with pytest.raises(CheckpointError, match="no best.pt or last.pt"):
        load_checkpoint(tmp_path)


def _spots(obj):
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else []
    for key, value in list(items):
        yield obj, key
        yield from _spots(value)


def test_malformed_contents_load_or_fail_clearly(tiny_checkpoint, tmp_path):
    """150 checkpoints with an entry deleted or replaced: each loads and captions, or is a CheckpointError."""
    valid, rng = torch.load(tiny_checkpoint, weights_only=False), random.Random(1)
    weird = [None, "", 0, -1, 1.5, True, [], {}, "lstm", torch.zeros(2), {"a": 1}]
    outcomes = {"ok": 0, "error": 0}
    for _ in range(150):
        payload = copy.deepcopy(valid)
        parent, key = rng.choice(list(_spots(payload)))
        if rng.random() < 0.4:
            del parent[key]
        else:
            parent[key] = rng.choice(weird)
        torch.save(payload, tmp_path / "m.pt")
        try:
            decoder, vocab = _load(tmp_path / "m.pt")
            Captioner(decoder, vocab, {}, "").caption_features(torch.zeros(1, decoder.feature_dim))
            outcomes["ok"] += 1
        except CheckpointError as e:
            assert str(tmp_path / "m.pt") in str(e)
            outcomes["error"] += 1
    assert outcomes["error"] > 100


def _retarget(source, target, **changes):
    payload = torch.load(source, weights_only=False)
    payload.update(changes)
    torch.save(payload, target)
    return target


def test_another_encoder_or_feature_size_is_refused(tiny_checkpoint, tmp_path, capsys):
    from PIL import Image

    image = tmp_path / "a.png"
    Image.new("RGB", (8, 8), (255, 0, 0)).save(image)
    other = _retarget(tiny_checkpoint, tmp_path / "other_encoder.pt", encoder_key="package:efficientnet_lite0|...")
    with pytest.raises(CheckpointError, match="use the matching encoder"):
        Captioner.from_checkpoint(other).caption([image])
    assert caption_main([str(image), f"checkpoint={other}"]) == 2
    assert "error: " in capsys.readouterr().err
    cfg = dict(load_checkpoint(tiny_checkpoint)["encoder_cfg"], name="test_efficientnet")  # other feature size
    wider = _retarget(tiny_checkpoint, tmp_path / "wider.pt", encoder_cfg=cfg)
    with pytest.raises(CheckpointError, match="reads 96-d features"):
        Captioner.from_checkpoint(wider).caption([image])


def test_caption_cli_reports_a_bad_checkpoint_without_a_traceback(tiny_checkpoint, tmp_path, capsys):
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    (tmp_path / "cut.pt").write_bytes(tiny_checkpoint.read_bytes()[:500])
    assert caption_main([str(tmp_path), f"checkpoint={tmp_path / 'cut.pt'}"]) == 2
    assert capsys.readouterr().err.startswith("error: checkpoint ")
    assert caption_main([str(tmp_path), f"checkpoint={tiny_checkpoint}", "decoding.method=topk"]) == 2
    assert "decoding.method must be one of" in capsys.readouterr().err
    # Hydra names the key and the value it could not convert
    assert caption_main([str(tmp_path), f"checkpoint={tiny_checkpoint}", "decoding.beam_size=three"]) == 2
    assert "decoding.beam_size" in capsys.readouterr().err


@pytest.fixture(scope="module")
def lstm_run(tiny_root, tiny_prepared):
    """A one-epoch LSTM run of the tiny set (last.pt and best.pt)."""
    run_dir = tiny_root / "reliability_lstm"
    train(run_options(tiny_cfg(tiny_root, "schedule.stages.cross_entropy.epochs=1")).training, tiny_prepared, run_dir)
    return run_dir


@pytest.mark.parametrize("override", ["cell=gru", "model.hidden_size=64", "cell.num_layers=2"])
def test_resume_with_another_decoder_is_refused(tiny_root, tiny_prepared, lstm_run, override):
    with pytest.raises(CheckpointError, match="cannot resume .* resume it with the run's own model"):
        train(run_options(tiny_cfg(tiny_root, f"resume={lstm_run}", override)).training, tiny_prepared, tiny_root / "never")
    assert not (tiny_root / "never").exists()


def test_mid_epoch_resume_with_another_batch_order_is_refused(tiny_root, tiny_prepared, lstm_run, tmp_path):
    mid = _retarget(lstm_run / "checkpoints" / "last.pt", tmp_path / "mid.pt", epoch=0, step=3)
    with pytest.raises(CheckpointError, match="stopped mid-epoch"):
        train(run_options(tiny_cfg(tiny_root, f"resume={mid}", "schedule.stages.cross_entropy.batch_size=8")).training,
              tiny_prepared, tmp_path / "run")
    with pytest.raises(CheckpointError, match="stopped mid-epoch"):
        train(run_options(tiny_cfg(tiny_root, f"resume={mid}", "seed=1")).training, tiny_prepared, tmp_path / "run")


def test_resume_needs_training_state(tiny_root, tiny_prepared, tiny_checkpoint):
    with pytest.raises(CheckpointError, match="holds no training state"):
        train(run_options(tiny_cfg(tiny_root, f"resume={tiny_checkpoint}")).training, tiny_prepared, tiny_root / "never")


def test_resume_into_a_new_directory_brings_the_best_checkpoint(tiny_root, tiny_prepared, lstm_run, tmp_path):
    train(run_options(tiny_cfg(tiny_root, f"resume={lstm_run}", "schedule.stages.cross_entropy.epochs=1")).training,
          tiny_prepared, tmp_path / "new")
    assert (tmp_path / "new" / "checkpoints" / "best.pt").read_bytes() == (
        lstm_run / "checkpoints" / "best.pt").read_bytes()
