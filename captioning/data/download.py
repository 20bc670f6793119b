"""Download and lay out the public datasets the configs in configs/data/ expect (for users who are online).

Everything goes under ``<root>/<dataset>/`` (root: $CAPTIONING_DATA or ``data``). Each zip is extracted
once (a ``.<zip>.done`` file records it) and then deleted unless asked to keep it.

Downloads (``fetch``) use the standard library's urllib, because torchvision's and pooch's downloaders
restart from zero after an interruption. A file is written to ``.<name>.part`` and renamed when complete.
When a ``.part`` is left from an interrupted run, the next request asks for the rest
(``Range: bytes=<size>-``): a 206 reply is appended (the bytes already there are hashed first, so the
sha256 covers the whole file), a 200 reply (a server that ignores Range) starts over, and a 416 reply
means the part is already complete if its size is the total the server reports (else it starts over).
A body shorter than its Content-Length, a dropped connection, a timeout or a 5xx reply is retried a
couple of times with backoff, resuming each time; if it still fails, DownloadError names the URL and the
``.part`` stays for the next run to resume. A checksum mismatch deletes the ``.part``.

Checksums: a ``Remote`` with a pinned ``sha256`` (a digest known to be right) is verified against it.
Most remotes have none pinned yet (their digests could not be learned where this code was written): for
those the transfer is checked only for integrity (the length against Content-Length), and the sha256
the download produced is recorded in ``<file>.sha256`` (``sha256sum`` format; it stays when ``prepare``
deletes an extracted zip) and logged, so a maintainer can pin it in ``DATASETS``. That record is *not*
verified against a published digest; it only lets later runs (``fetch(..., verify=True)``, which
``prepare`` uses) detect that the file changed or was corrupted on disk since it was downloaded. Never
touches the network in tests (they serve files from a local http.server).
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import shutil
import time
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


RETRYABLE_HTTP = frozenset({408, 425, 429, 500, 502, 503, 504})


class _Incomplete(Exception):
    """The transfer stopped early (short body, dropped connection, timeout): retry and resume."""


def _sha256_of(path: Path, digest=None):
    """``digest`` (a new sha256 when None) updated with the bytes of ``path``."""
    digest = digest or hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest


def record_path(dest: Path) -> Path:
    """Where the sha256 a download produced is recorded for files without a pinned one."""
    return dest.with_name(dest.name + ".sha256")


def read_record(dest: Path) -> str | None:
    """The sha256 recorded beside ``dest`` (first token of a ``sha256sum`` line), or None."""
    try:
        text = record_path(dest).read_text().split()
    except FileNotFoundError:
        return None
    return text[0].lower() if text else None


def _write_record(dest: Path, hexdigest: str) -> None:
    tmp = dest.with_name(f".{dest.name}.sha256.part")
    tmp.write_text(f"{hexdigest}  {dest.name}\n")
    os.replace(tmp, record_path(dest))


def _total_from_content_range(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, total size) of a ``Content-Range: bytes a-b/total`` or ``bytes */total`` header."""
    if not value or not value.strip().startswith("bytes"):
        return None, None
    spec = value.strip()[5:].strip()
    span, _, total = spec.partition("/")
    first = span.split("-", 1)[0] if span != "*" else ""
    return (int(first) if first.isdigit() else None), (int(total) if total.isdigit() else None)


def _transfer(url: str, tmp: Path, sha256: str | None, timeout: float):
    """Download ``url`` into ``tmp``, resuming an existing part when the server allows; returns the sha256
    object of the whole file. Raises _Incomplete (part kept) when the body stops short."""
    have = tmp.stat().st_size if tmp.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code != 416 or not have:
            raise
        _, total = _total_from_content_range(e.headers.get("Content-Range"))
        e.close()
        digest = _sha256_of(tmp)
        if total == have or (total is None and sha256 and digest.hexdigest() == sha256):
            log.info("%s: the %d bytes of %s are the whole file (server: 416)", url, have, tmp.name)
            return digest
        log.warning("%s: server refused the range from byte %d (size %s); starting over", url, have, total)
        tmp.unlink()
        return _transfer(url, tmp, sha256, timeout)
    with response:
        status = response.getcode()
        first, total = _total_from_content_range(response.headers.get("Content-Range"))
        if status == 206 and first != have:
            if not have:
                raise DownloadError(f"{url}: the server sent bytes from {first} when asked for the whole file")
            log.warning("%s: asked for bytes from %d, the server sent from %s; starting over", url, have, first)
            response.close()
            tmp.unlink()
            return _transfer(url, tmp, sha256, timeout)
        if have and status == 206:
            log.info("%s: resuming at byte %d of %s", url, have, total if total is not None else "?")
            digest, mode = _sha256_of(tmp), "ab"
        else:
            if have:
                log.info("%s: the server ignores Range (status %s); downloading from the start", url, status)
            digest, mode, have, total = hashlib.sha256(), "wb", 0, None
        length = response.headers.get("Content-Length")
        expected = int(length) if length and length.strip().isdigit() else None
        if total is None and expected is not None:
            total = have + expected
        got, read = 0, getattr(response, "read1", response.read)  # read1: what has arrived (kept on a timeout)
        with open(tmp, mode) as out:
            while True:
                try:
                    chunk = read(CHUNK)
                except (OSError, http.client.HTTPException) as e:  # reset, timeout, IncompleteRead
                    raise _Incomplete(f"connection lost after {have + got} of {total or '?'} bytes ({e})") from e
                if not chunk:
                    break
                out.write(chunk)
                digest.update(chunk)
                got += len(chunk)
    if (expected is not None and got != expected) or (total is not None and have + got < total):
        raise _Incomplete(f"got {have + got} of {total} bytes (the body was shorter than its Content-Length)")
    return digest


def _retryable(error: Exception) -> bool:
    if isinstance(error, _Incomplete):
        return True
    if isinstance(error, urllib.error.HTTPError):
        return error.code in RETRYABLE_HTTP
    if isinstance(error, urllib.error.URLError):  # no connection, DNS, refused, timeout; not a missing file://
        return not isinstance(error.reason, (FileNotFoundError, PermissionError, IsADirectoryError))
    return isinstance(error, (ConnectionError, TimeoutError, http.client.HTTPException))  # not a full disk


def check_existing(dest: Path, sha256: str | None = None) -> str:
    """Hash ``dest`` and compare it with the pinned ``sha256``, else with the digest recorded when it was
    downloaded (recording one when there is none); raises DownloadError on a mismatch. Returns the digest."""
    got = _sha256_of(dest).hexdigest()
    expected, source = (sha256.lower(), "pinned in DATASETS") if sha256 else (read_record(dest), None)
    if expected is None:
        _write_record(dest, got)
        log.info("%s: no sha256 pinned or recorded; recorded the present file's %s in %s (not verified)",
                 dest, got, record_path(dest).name)
        return got
    if got != expected:
        source = source or f"recorded in {record_path(dest).name} when it was downloaded"
        raise DownloadError(f"{dest}: sha256 {got} != expected {expected} ({source}); the file is corrupted or "
                            f"was changed: delete it{'' if sha256 else ' and its .sha256 record'} and run again")
    return got


def fetch(url: str, dest: Path, sha256: str | None = None, *, verify: bool = False, retries: int = 2,
          backoff: float = 2.0, timeout: float = 60) -> Path:
    """Download ``url`` to ``dest`` via ``.<name>.part``, resuming a part left by an earlier run where the
    server allows (see the module docstring). With a pinned ``sha256`` the whole file is verified against it
    (a mismatch deletes the part); without one, the length is checked against Content-Length and the digest
    is recorded in ``<dest>.sha256`` and logged, not verified. An existing ``dest`` is skipped, after being
    checked against the pin or the record when ``verify``. Transient failures are retried ``retries`` times,
    waiting ``backoff`` seconds, then twice that, ...; a final failure raises DownloadError and keeps the part."""
    if dest.exists():
        if verify:
            check_existing(dest, sha256)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part")
    sha256 = sha256.lower() if sha256 else None
    resuming = f" (resuming from {tmp.stat().st_size} bytes)" if tmp.exists() else ""
    log.info("downloading %s -> %s%s", url, dest, resuming)
    for attempt in range(retries + 1):
        try:
            digest = _transfer(url, tmp, sha256, timeout)
            break
        except (_Incomplete, urllib.error.URLError, OSError, http.client.HTTPException) as e:
            if attempt < retries and _retryable(e):
                wait = backoff * 2**attempt
                log.warning("%s: %s; retrying in %.0f s (%d of %d)", url, e, wait, attempt + 1, retries)
                time.sleep(wait)
                continue
            kept = f"; the {tmp.stat().st_size} bytes so far are kept in {tmp} and the next run resumes" if (
                tmp.exists() and tmp.stat().st_size) else ""
            what = (f"could not download {url} ({e}){kept}. Check the connection and run again, or fetch it by "
                    f"hand to {dest}")
            raise DownloadError(what) from e
    got = digest.hexdigest()
    if sha256:
        if got != sha256:
            tmp.unlink()
            raise DownloadError(f"{url}: sha256 {got} != expected {sha256} (pinned); deleted the download "
                                f"({tmp.name}), run again (if it keeps happening the file changed upstream: "
                                "check and update the pin)")
    else:
        previous = read_record(dest)
        if previous and previous != got:
            log.warning("%s: sha256 %s differs from the %s recorded by an earlier download; the file changed "
                        "upstream or one of the downloads is corrupted", url, got, previous)
        _write_record(dest, got)
        log.warning("%s: no sha256 pinned: checked the length only (not verified against a published digest); "
                    "recorded sha256 %s in %s, pin it in DATASETS once confirmed", url, got, record_path(dest).name)
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
            fetch(remote.url, folder / filename, remote.sha256, verify=True)
            continue
        if _done_marker(folder, filename, remote.members).exists():
            continue
        archive = fetch(remote.url, folder / "archives" / filename, remote.sha256, verify=True)
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
