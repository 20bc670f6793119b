"""The download helpers, exercised on local file:// URLs (tests never touch the network)."""

import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from captioning.data import download
from captioning.data.download import Dataset, DownloadError, Remote, extract, fetch, prepare

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "prepare_data.py"


def test_fetch_checks_sha256_and_leaves_no_partial_file(tmp_path):
    src = tmp_path / "src.txt"
    src.write_text("hello")
    good = hashlib.sha256(b"hello").hexdigest()
    assert fetch(src.as_uri(), tmp_path / "out" / "a.txt", good).read_text() == "hello"
    with pytest.raises(DownloadError, match="sha256"):
        fetch(src.as_uri(), tmp_path / "out" / "b.txt", "0" * 64)
    with pytest.raises(DownloadError, match="could not download"):
        fetch((tmp_path / "missing").as_uri(), tmp_path / "out" / "c.txt")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.txt"]


def test_extract_refuses_paths_outside_the_folder(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../escape.txt", "x")
    with pytest.raises(DownloadError, match="outside"):
        extract(archive, tmp_path / "into")
    assert not (tmp_path / "escape.txt").exists()


def test_prepare_lays_out_a_dataset_once(tmp_path, monkeypatch):
    archive = tmp_path / "Flicker8k.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("Flicker8k_Dataset/1.jpg", "jpg")
        zf.writestr("captions/dataset_flickr8k.json", "{}")
    spec = Dataset((Remote(archive.as_uri(), "1 KB"), Remote(archive.as_uri(), "1 KB", members=("dataset_flickr8k.json",))),
                   "images/", rename={"Flicker8k_Dataset": "images"})  # fmt: skip
    monkeypatch.setitem(download.DATASETS, "toy", spec)
    folder = prepare("toy", tmp_path / "data")
    assert (folder / "images" / "1.jpg").read_text() == "jpg" and (folder / "dataset_flickr8k.json").exists()
    assert not (folder / "archives" / "Flicker8k.zip").exists()  # deleted after extraction
    archive.unlink()
    assert prepare("toy", tmp_path / "data") == folder  # done: nothing fetched again


def test_script_help_lists_targets_and_sizes():
    out = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, check=True).stdout
    for word in ("coco2014", "coco2017", "flickr8k", "flickr30k", "tinyshakespeare", "shapes", "13.5 GB"):
        assert word in out


def test_script_generates_shapes(tmp_path, capsys):
    import runpy

    main = runpy.run_path(str(SCRIPT))["main"]
    assert main(["shapes", "--config", "shapes_tiny", "--root", str(tmp_path)]) == 0
    assert "train 64, val 16, test 16, test_novel 16" in capsys.readouterr().out
    assert (tmp_path / "shapes_tiny" / "annotations" / "captions_test_novel.json").exists()
