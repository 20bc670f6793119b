"""Download and lay out the public datasets the configs in configs/data/ expect (for users who are online).

Everything goes under ``<root>/<dataset>/`` (root: $CAPTIONING_DATA or ``data``). Each file is
downloaded to a temp name and renamed when complete (and its sha256 checked where known); each zip is
extracted once (a ``.<zip>.done`` file records it) and then deleted unless asked to keep it, so an
interrupted run resumes where it stopped. Never called by tests.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

COCO = "http://images.cocodataset.org"
KARPATHY = "https://cs.stanford.edu/people/karpathy/deepimagesent/caption_datasets.zip"
CHUNK = 1 << 20


@dataclass(frozen=True)
class Remote:
    """One file to fetch: where from, about how big, and what to keep of it."""

    url: str
    size: str
    sha256: str | None = None
    members: tuple[str, ...] = ()  # zip members to extract (all when empty)


@dataclass(frozen=True)
class Dataset:
    """A dataset's downloads, where its files end up, and steps a user must do by hand."""

    remotes: tuple[Remote, ...]
    layout: str
    manual: str = ""
    rename: dict[str, str] = field(default_factory=dict)  # extracted folder -> name the config expects


DATASETS: dict[str, Dataset] = {
    "coco2014": Dataset(
        (Remote(f"{COCO}/zips/train2014.zip", "13.5 GB"), Remote(f"{COCO}/zips/val2014.zip", "6.6 GB"),
         Remote(f"{COCO}/annotations/annotations_trainval2014.zip", "253 MB"),
         Remote(KARPATHY, "36 MB", members=("dataset_coco.json",))),  # fmt: skip
        "train2014/ val2014/ annotations/captions_{train,val}2014.json dataset_coco.json (configs/data/coco2014.yaml)",
    ),
    "coco2017": Dataset(
        (Remote(f"{COCO}/zips/train2017.zip", "19.3 GB"), Remote(f"{COCO}/zips/val2017.zip", "815 MB"),
         Remote(f"{COCO}/annotations/annotations_trainval2017.zip", "253 MB")),  # fmt: skip
        "train2017/ val2017/ annotations/captions_{train,val}2017.json (configs/data/coco2017.yaml)",
    ),
    "flickr8k": Dataset(
        (Remote("https://github.com/jbrownlee/Datasets/releases/download/Flickr8k/Flickr8k_Dataset.zip", "1.1 GB"),
         Remote(KARPATHY, "36 MB", members=("dataset_flickr8k.json",))),  # fmt: skip
        "images/ (8,091 jpgs) dataset_flickr8k.json (configs/data/flickr8k.yaml)",
        rename={"Flicker8k_Dataset": "images", "Flickr8k_Dataset": "images"},
    ),
    "flickr30k": Dataset(
        (Remote(KARPATHY, "36 MB", members=("dataset_flickr30k.json",)),),
        "images/ (31,783 jpgs) dataset_flickr30k.json (configs/data/flickr30k.yaml)",
        manual="Flickr30k images need a request form (https://shannon.cs.illinois.edu/DenotationGraph/); "
        "put the flickr30k-images/ jpgs (about 4.4 GB) in {dir}/images/.",
    ),
    "tinyshakespeare": Dataset(
        (Remote("https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
                "1.1 MB", "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"),),  # fmt: skip
        "input.txt (char-rnn's copy, 1,115,394 bytes)",
    ),
}


class DownloadError(RuntimeError):
    """A download that failed or came back corrupted."""


def default_root() -> Path:
    """$CAPTIONING_DATA, else ``data`` in the working directory (as the data configs say)."""
    return Path(os.environ.get("CAPTIONING_DATA", "data"))


def fetch(url: str, dest: Path, sha256: str | None = None) -> Path:
    """Download ``url`` to ``dest`` (skipped when present) via a temp file; check sha256 if given."""
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part")
    digest = hashlib.sha256()
    log.info("downloading %s -> %s", url, dest)
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out:
            while chunk := response.read(CHUNK):
                out.write(chunk)
                digest.update(chunk)
    except (urllib.error.URLError, OSError) as e:
        tmp.unlink(missing_ok=True)
        what = f"could not download {url} ({e}); check the connection, or fetch it by hand to {dest}"
        raise DownloadError(what) from e
    if sha256 and digest.hexdigest() != sha256:
        tmp.unlink()
        raise DownloadError(f"{url}: sha256 {digest.hexdigest()} != expected {sha256}; try again")
    os.replace(tmp, dest)
    return dest


def _done_marker(into: Path, archive_name: str, members: tuple[str, ...]) -> Path:
    """The file recording that (these members of) an archive were extracted into ``into``."""
    return into / f".{archive_name}{''.join('.' + m for m in members)}.done"


def extract(archive: Path, into: Path, members: tuple[str, ...] = ()) -> None:
    """Unzip (some members of) ``archive`` into ``into`` once, refusing paths that leave ``into``."""
    done = _done_marker(into, archive.name, members)
    if done.exists():
        return
    with zipfile.ZipFile(archive) as zf:
        names = [n for n in zf.namelist() if not members or Path(n).name in members]
        for name in names:
            target = (into / name).resolve()
            if not target.is_relative_to(into.resolve()):
                raise DownloadError(f"{archive}: member {name!r} would be written outside {into}")
        for name in names:
            if members:  # flatten: the configs expect the json at the dataset root
                with zf.open(name) as src, open(into / Path(name).name, "wb") as dst:
                    shutil.copyfileobj(src, dst)
            else:
                zf.extract(name, into)
    done.touch()


def prepare(name: str, root: Path | None = None, keep_archives: bool = False) -> Path:
    """Download and lay out one dataset under ``root/name``; returns that directory."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}")
    spec, folder = DATASETS[name], (root or default_root()) / name
    for remote in spec.remotes:
        filename = remote.url.rsplit("/", 1)[-1]
        if not filename.endswith(".zip"):
            fetch(remote.url, folder / filename, remote.sha256)
            continue
        if _done_marker(folder, filename, remote.members).exists():
            continue
        archive = fetch(remote.url, folder / "archives" / filename, remote.sha256)
        extract(archive, folder, remote.members)
        if not keep_archives:
            archive.unlink()
    for old, new in spec.rename.items():
        if (folder / old).is_dir() and not (folder / new).exists():
            os.replace(folder / old, folder / new)
    if spec.manual:
        log.warning(spec.manual.format(dir=folder))
    return folder


def describe_all() -> str:
    """A table of the datasets: downloads, sizes and resulting layout (for --help)."""
    lines = []
    for name, spec in DATASETS.items():
        sizes = " + ".join(r.size for r in spec.remotes)
        lines.append(f"  {name:<16} {sizes}\n  {'':<16} -> <root>/{name}/: {spec.layout}")
        if spec.manual:
            lines.append(f"  {'':<16} {spec.manual.format(dir=f'<root>/{name}')}")
    return "\n".join(lines)
