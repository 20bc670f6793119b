"""The user's API (captioning/captioner.py): `from captioning import Captioner` without importing torch on
`import captioning`; a Captioner called on a path, a PIL image, a tensor or a list of them; save_pretrained /
from_pretrained in the Hub's layout, a Hub repo id resolved through huggingface_hub (faked here: no network),
and exports written before the model card still loading."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from captioning import Captioner
from captioning.captioner import Caption
from captioning.models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from captioning.models.export import load_export

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tuned(tiny_checkpoint, tmp_path_factory):
    """tiny_checkpoint with its random encoder's weights stored ("fine-tuned"): every load encodes alike."""
    from captioning.features.encoder import build_encoder

    ckpt = load_checkpoint(tiny_checkpoint)
    torch.manual_seed(1)
    state = build_encoder({**ckpt["encoder_cfg"], "trainable": True}).backbone.state_dict()
    path = tmp_path_factory.mktemp("tuned") / "tuned.pt"
    torch.save({**{k: v for k, v in ckpt.items() if k != "path"}, "encoder_state": state}, path)
    return path


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    """Five small RGB PNG files of noise, not square (the encoder's transform resizes them)."""
    folder, rng = tmp_path_factory.mktemp("pictures"), np.random.default_rng(0)
    paths = []
    for i in range(5):
        paths.append(folder / f"p{i}.png")
        Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(paths[-1])
    return paths


def as_tensor(image: Image.Image) -> torch.Tensor:
    """What torchvision's ToTensor gives: float [3, H, W] in [0, 1]."""
    return torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1).float().div(255)


def test_import_captioning_is_light_and_gives_the_captioner():
    code = ("import sys, captioning\n"
            "assert 'torch' not in sys.modules, 'import captioning imported torch'\n"
            "from captioning import Captioner, Caption\n"
            "import captioning.captioner as api\n"
            "assert Captioner is api.Captioner and Caption is api.Caption\n"
            "assert 'Captioner' in dir(captioning)\n"
            "try:\n"
            "    captioning.NoSuchThing\n"
            "except AttributeError as exc:\n"
            "    print(exc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr
    assert "has no attribute 'NoSuchThing'" in out.stdout


def test_a_path_a_pil_image_a_tensor_and_a_list_give_the_same_caption(tuned, pictures):
    captioner = Captioner.from_checkpoint(tuned, device="cpu")
    path = pictures[0]
    pil = Image.open(path)
    floats, bytes_ = as_tensor(pil), torch.from_numpy(np.array(pil)).permute(2, 0, 1)
    one = captioner(path)
    assert isinstance(one, str) and one == captioner(str(path)) == captioner(pil) == captioner(floats) \
        == captioner(bytes_) == captioner(pil.convert("RGBA"))
    assert captioner([path, pil, floats]) == [one] * 3
    assert captioner(torch.stack([floats, floats])) == [one] * 2  # a batch tensor is a list of images
    assert captioner([]) == []
    # the same pixels reach the encoder, so the scores agree too, not only the words
    features = captioner.features(path)
    for other in (pil, floats, bytes_):
        assert torch.equal(captioner.features(other), features)
    rich = captioner(floats, return_beams=2)
    assert isinstance(rich, Caption) and rich == captioner(path, return_beams=2) and len(rich.beams) == 2
    assert rich.text == one and str(rich) == one
    # caption() keeps returning Caption objects, now for one image (not its path's characters) too
    assert captioner.caption(str(path)) == captioner.caption([path])[0] and captioner.caption(str(path)).text == one
    assert captioner.caption(pil) == captioner.caption(str(path))
    assert [c.text for c in captioner.caption(pictures)] == captioner(pictures)


def test_batching_inside_does_not_change_the_captions(tuned, pictures):
    captioner = Captioner.from_checkpoint(tuned)
    assert captioner(pictures, batch_size=2, method="greedy") == captioner(pictures, method="greedy")
    assert captioner(pictures, batch_size=2) == [captioner(p) for p in pictures]
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        captioner(pictures, batch_size=0)


def test_inputs_it_cannot_caption_are_refused_by_name(tuned, pictures):
    captioner = Captioner.from_checkpoint(tuned)
    floats = as_tensor(Image.open(pictures[0]))
    with pytest.raises(ValueError, match=r"values lie in \[0, 1\].*before normalising"):
        captioner((floats - 0.5) / 0.25)
    with pytest.raises(ValueError, match=r"\[3, H, W\]"):
        captioner(floats[:1])
    with pytest.raises(ValueError, match=r"\[3, H, W\] or a batch"):
        captioner(torch.zeros(4, 4))
    with pytest.raises(TypeError, match="cannot caption a ndarray.*Image.fromarray"):
        captioner(np.zeros((8, 8, 3), dtype=np.uint8))
    with pytest.raises(TypeError, match="cannot caption a int"):
        captioner(3)
    with pytest.raises(ValueError, match="return_beams=2 needs beam search"):
        captioner(pictures[0], return_beams=2, method="greedy")
    with pytest.raises(CheckpointError, match="no attention maps"):
        captioner(pictures[0], return_attention=True)


def test_attention_maps_on_request(tmp_path, pictures):
    from captioning.features.encoder import build_encoder
    from captioning.models.base import build_model
    from captioning.text.vocab import Vocabulary

    torch.manual_seed(0)
    encoder_cfg = {"name": "test_resnet", "source": "timm", "weights": None, "image_size": 32, "pool": "regions",
                   "grid_size": 2}
    encoder = build_encoder({**encoder_cfg, "trainable": True})
    vocab = Vocabulary("a red green blue circle square on left".split())
    model = build_model({"name": "show_attend_tell", "embed_dim": 8, "hidden_size": 16}, encoder.feature_dim,
                        len(vocab), 8)
    save_checkpoint(tmp_path / "att.pt", model, vocab, encoder_cfg, "", encoder_state=encoder.backbone.state_dict())
    captioner = Captioner.from_checkpoint(tmp_path / "att.pt")
    attended = captioner(pictures[:2], return_attention=True)
    assert [c.text for c in attended] == captioner(pictures[:2])
    for caption in attended:
        words = len(caption.text.split()) + 1  # and <end>
        assert caption.attention.shape == (words, 4)  # 2x2 regions
        np.testing.assert_allclose(caption.attention.sum(1), 1, rtol=1e-5)
    (caption, words, weights), = captioner.attend([pictures[0]])  # the older form: (caption, words, weights)
    alone = captioner(pictures[0], return_attention=True)
    assert caption == alone and words == caption.text.split() + ["<end>"]
    np.testing.assert_array_equal(weights, alone.attention)


def test_device_and_to(tuned, pictures):
    captioner = Captioner.from_checkpoint(tuned, device="cpu")
    assert captioner.to("cpu") is captioner and captioner.device == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert Captioner.from_checkpoint(tuned, device="auto").device.type == expected
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU is visible"):
            captioner.to("cuda")


def test_save_pretrained_round_trip_in_the_hubs_layout(tuned, pictures, tmp_path):
    original = Captioner.from_checkpoint(tuned)
    folder = original.save_pretrained(tmp_path / "model")
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "encoder.safetensors",
                                                        "model.safetensors", "vocab.json"]
    config = json.loads((folder / "config.json").read_text())
    assert sorted(config["files"]) == ["encoder.safetensors", "model.safetensors", "vocab.json"]  # not the card
    loaded = Captioner.from_pretrained(folder)
    for name, value in original.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[name], value), name
    assert loaded(pictures, return_beams=3) == original(pictures, return_beams=3)
    assert loaded(pictures, method="greedy") == original(pictures, method="greedy")

    front, body = parse_card(folder / "README.md")
    assert front["library_name"] == "captioning" and front["pipeline_tag"] == "image-to-text"
    assert "image-captioning" in front["tags"] and "model:show_tell" in front["tags"]
    assert "from captioning import Captioner" in body and "Captioner.from_pretrained(" in body
    for heading in ("## Model", "## Encoder", "## Data", "## Metrics", "## Training command", "## Use"):
        assert heading in body, heading
    assert "`show_tell`, cell `lstm`" in body and "hidden_size=16" in body and "test_resnet" in body
    assert "fine-tuned" in body  # encoder.safetensors travels with it

    # saved again from the loaded copy: the same files (the card included)
    again = loaded.save_pretrained(tmp_path / "again")
    for name in ("config.json", "model.safetensors", "encoder.safetensors", "vocab.json", "README.md"):
        assert (again / name).read_bytes() == (folder / name).read_bytes(), name
    # an edited card still loads (it decides nothing about the captions)
    (folder / "README.md").write_text("my notes\n")
    assert Captioner.from_pretrained(folder)(pictures[0]) == original(pictures[0])


def parse_card(path: Path) -> tuple[dict, str]:
    """(YAML front matter, Markdown body) of a model card."""
    text = path.read_text()
    assert text.startswith("---\n"), text[:40]
    front, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(front), body


def test_a_hub_repo_id_is_downloaded_with_huggingface_hub(tuned, pictures, tmp_path, monkeypatch):
    import huggingface_hub

    folder = Captioner.from_checkpoint(tuned).save_pretrained(tmp_path / "snapshot")
    calls = []

    def fake_snapshot_download(repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        return str(folder)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    monkeypatch.chdir(tmp_path)  # "someone/tiny-captioner" is no folder here
    captioner = Captioner.from_pretrained("someone/tiny-captioner", revision="v1")
    assert captioner(pictures[0]) == Captioner.from_pretrained(folder)(pictures[0])
    (repo_id, kwargs), = calls
    assert repo_id == "someone/tiny-captioner" and kwargs["revision"] == "v1"
    assert "config.json" in kwargs["allow_patterns"] and "*.safetensors" in kwargs["allow_patterns"]

    # a local folder, even one named like a repo id, is read offline
    calls.clear()
    (tmp_path / "someone").mkdir()
    (tmp_path / "someone" / "tiny-captioner").symlink_to(folder, target_is_directory=True)
    Captioner.from_pretrained("someone/tiny-captioner")
    assert not calls
    with pytest.raises(CheckpointError, match="does not exist"):  # a missing path that is no repo id
        Captioner.from_pretrained(tmp_path / "no" / "such")
    assert not calls


def test_an_unreachable_repo_is_one_line_that_says_what_to_pass(monkeypatch, tmp_path):
    import huggingface_hub
    from huggingface_hub.utils import LocalEntryNotFoundError

    monkeypatch.chdir(tmp_path)

    def offline(repo_id, **kwargs):
        raise LocalEntryNotFoundError("Cannot find the requested files in the disk cache and outgoing traffic "
                                      "has been disabled.\nTo enable hf.co look-ups, set HF_HUB_OFFLINE=0.")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(CheckpointError, match="cannot be reached.*pass the local folder") as info:
        Captioner.from_pretrained("someone/model")
    assert "\n" not in str(info.value)

    def broken(repo_id, **kwargs):
        raise OSError("502 Bad Gateway\n<html>...</html>")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", broken)
    with pytest.raises(CheckpointError, match="could not be downloaded.*502 Bad Gateway") as info:
        Captioner.from_pretrained("someone/model")
    assert "\n" not in str(info.value)


def test_an_export_written_before_the_model_card_still_loads(tuned, pictures, tmp_path):
    """Format 1 as written up to commit b960d90: no README.md, no ``training`` entry."""
    from safetensors.torch import save

    ckpt = load_checkpoint(tuned)
    tensors = lambda state: {k: v.detach().contiguous().clone() for k, v in state.items()}  # noqa: E731
    blobs = {"model.safetensors": save(tensors(ckpt["weights"]), metadata={"format": "pt"}),
             "vocab.json": (json.dumps(ckpt["vocab"], indent=1) + "\n").encode(),
             "encoder.safetensors": save(tensors(ckpt["encoder_state"]), metadata={"format": "pt"})}
    old = tmp_path / "old"
    old.mkdir()
    for name, data in blobs.items():
        (old / name).write_bytes(data)
    config = {"format": "captioning-export", "format_version": 1, "model": ckpt["model"],
              "feature_dim": ckpt["feature_dim"], "vocab_size": ckpt["vocab_size"], "max_len": ckpt["max_len"],
              "encoder_cfg": ckpt["encoder_cfg"], "encoder_key": ckpt["encoder_key"],
              "files": {name: hashlib.sha256(data).hexdigest() for name, data in blobs.items()}}
    (old / "config.json").write_text(json.dumps(config, indent=2))
    assert load_export(old)["training"] == {}
    captioner = Captioner.from_pretrained(old)
    assert captioner(pictures, return_beams=2) == Captioner.from_checkpoint(tuned)(pictures, return_beams=2)
    # and saved again, it gains a card that says what is not known
    _, body = parse_card(captioner.save_pretrained(tmp_path / "new") / "README.md")
    assert "Not recorded" in body


def test_offline_the_real_hub_client_gives_the_same_one_line(tmp_path):
    """huggingface_hub itself with HF_HUB_OFFLINE=1 (read when it is imported, so in a fresh process): no
    network is touched, and a repo id not in the (empty) cache is refused with the way out."""
    code = ("from captioning import Captioner\n"
            "from captioning.models.checkpoint import CheckpointError\n"
            "try:\n"
            "    Captioner.from_pretrained('someone/tiny-captioner')\n"
            "except CheckpointError as exc:\n"
            "    print(exc)\n")
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "HF_HOME": str(tmp_path / "hf")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("\n") == 1 and "cannot be reached" in out.stdout and "local folder" in out.stdout
