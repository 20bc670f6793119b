"""The download helpers, exercised on local file:// URLs and a local http.server in a thread serving
files from tmp_path (tests never touch the network)."""

import hashlib
import http.server
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest

from captioning.data import download
from captioning.data.download import Dataset, DownloadError, Remote, extract, fetch, prepare, read_record

BODY = bytes(range(256)) * 1000  # 256,000 bytes, several read chunks of the handler
FAST = {"backoff": 0, "timeout": 5}


class Server:
    """What the handler does: ``ranges`` honours Range (else ignores it); the first ``drops`` requests send
    ``cut`` bytes of the body (with the full Content-Length) and close the connection, after going silent
    for ``stall`` seconds (so that a client with a shorter timeout gives up mid-body)."""

    def __init__(self, root: Path):
        self.root, self.ranges, self.drops, self.cut, self.stall, self.requests = root, True, 0, 0, 0.0, []


def make_handler(server: Server):
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def do_GET(self):
            path = server.root / self.path.lstrip("/")
            server.requests.append(self.headers.get("Range"))
            if not path.is_file():
                self.send_error(404)
                return
            data, start, status = path.read_bytes(), 0, 200
            asked = self.headers.get("Range")
            if server.ranges and asked and asked.startswith("bytes=") and asked.endswith("-"):
                start = int(asked[6:-1])
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status = 206
            self.send_response(status)
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            body = data[start:]
            if server.drops:
                server.drops -= 1
                body = body[: server.cut]
            self.wfile.write(body)
            self.close_connection = True
            if len(body) < len(data) - start and server.stall:
                self.wfile.flush()
                time.sleep(server.stall)

    return Handler


@pytest.fixture
def server(tmp_path, monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    state = Server(tmp_path / "served")
    state.root.mkdir()
    (state.root / "blob.bin").write_bytes(BODY)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join()


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
    out = subprocess.run([sys.executable, "-m", "captioning.commands.prepare_data", "--help"], capture_output=True,
                         text=True, check=True).stdout
    for word in ("coco2014", "coco2017", "flickr8k", "flickr30k", "tinyshakespeare", "shapes", "13.5 GB"):
        assert word in out


def test_script_generates_shapes(tmp_path, capsys):
    from captioning.commands.prepare_data import main

    assert main(["shapes", "data=shapes_tiny", f"root={tmp_path}"]) == 0
    assert "train 64, val 16, test 16, test_novel 16, val_novel 16" in capsys.readouterr().out
    assert (tmp_path / "shapes_tiny" / "annotations" / "captions_test_novel.json").exists()


GOOD = hashlib.sha256(BODY).hexdigest()


def test_resume_after_a_dropped_connection_gives_the_exact_bytes(server, tmp_path):
    dest, part = tmp_path / "out" / "blob.bin", tmp_path / "out" / ".blob.bin.part"
    server.drops, server.cut, server.stall = 1, 100_000, 1.0  # goes silent mid-body: the client times out
    with pytest.raises(DownloadError, match=r"could not download .*blob.bin \(connection lost after 100000 of "
                                            r"256000 bytes .*timed out.*kept in .*next run resumes"):
        fetch(f"{server.url}/blob.bin", dest, GOOD, retries=0, backoff=0, timeout=0.3)
    assert part.read_bytes() == BODY[:100_000] and not dest.exists()  # kept for the next run
    assert fetch(f"{server.url}/blob.bin", dest, GOOD, **FAST).read_bytes() == BODY
    assert server.requests == [None, "bytes=100000-"] and not part.exists()


def test_retries_resume_within_one_call_and_unpinned_files_get_a_record(server, tmp_path, caplog):
    dest = tmp_path / "blob.bin"
    server.drops, server.cut = 2, 70_000
    with caplog.at_level("WARNING"):
        assert fetch(f"{server.url}/blob.bin", dest, retries=2, **FAST).read_bytes() == BODY
    assert server.requests == [None, "bytes=70000-", "bytes=140000-"]
    assert read_record(dest) == GOOD and (tmp_path / "blob.bin.sha256").read_text() == f"{GOOD}  blob.bin\n"
    assert "not verified against a published digest" in caplog.text and GOOD in caplog.text


def test_a_server_ignoring_range_still_gives_the_right_file(server, tmp_path):
    dest = tmp_path / "blob.bin"
    (tmp_path / ".blob.bin.part").write_bytes(b"stale bytes that must not survive")
    server.ranges = False
    assert fetch(f"{server.url}/blob.bin", dest, GOOD, **FAST).read_bytes() == BODY
    assert server.requests == ["bytes=33-"]  # asked, got a 200, started over


def test_a_complete_part_is_finished_on_416(server, tmp_path):
    dest = tmp_path / "blob.bin"
    (tmp_path / ".blob.bin.part").write_bytes(BODY)  # crashed after the last byte, before the rename
    assert fetch(f"{server.url}/blob.bin", dest, GOOD, **FAST).read_bytes() == BODY
    (tmp_path / ".c.part").write_bytes(BODY + b"junk")  # longer than the file: 416 and a restart
    (server.root / "c").write_bytes(BODY)
    assert fetch(f"{server.url}/c", tmp_path / "c", GOOD, **FAST).read_bytes() == BODY


def test_a_checksum_mismatch_deletes_the_part_and_names_both_digests(server, tmp_path):
    dest, part = tmp_path / "blob.bin", tmp_path / ".blob.bin.part"
    part.write_bytes(b"X" + BODY[1:1000])  # a corrupt first byte, then a resume
    with pytest.raises(DownloadError, match=f"sha256 {hashlib.sha256(b'X' + BODY[1:]).hexdigest()} != expected {GOOD}"):
        fetch(f"{server.url}/blob.bin", dest, GOOD, **FAST)
    assert server.requests == ["bytes=1000-"] and not part.exists() and not dest.exists()


def test_a_truncated_body_raises_and_keeps_the_part(server, tmp_path):
    dest, part = tmp_path / "blob.bin", tmp_path / ".blob.bin.part"
    server.drops, server.cut = 3, 5000  # every try of this call comes back short
    with pytest.raises(DownloadError, match="got 15000 of 256000 bytes"):
        fetch(f"{server.url}/blob.bin", dest, retries=2, **FAST)
    assert part.read_bytes() == BODY[:15000] and not dest.exists() and read_record(dest) is None


def test_http_errors_are_clear_and_not_retried(server, tmp_path):
    with pytest.raises(DownloadError, match=r"could not download .*/nothing \(HTTP Error 404"):
        fetch(f"{server.url}/nothing", tmp_path / "nothing", retries=5, backoff=10, timeout=5)
    assert server.requests == [None]


def test_a_corrupted_file_is_detected_on_the_next_prepare(server, tmp_path, monkeypatch):
    spec = Dataset((Remote(f"{server.url}/blob.bin", "256 KB"),), "blob.bin")
    monkeypatch.setitem(download.DATASETS, "toy", spec)
    folder = prepare("toy", tmp_path / "data")
    assert (folder / "blob.bin").read_bytes() == BODY and read_record(folder / "blob.bin") == GOOD
    assert prepare("toy", tmp_path / "data") == folder and len(server.requests) == 1  # checked, not fetched
    with open(folder / "blob.bin", "r+b") as f:  # one flipped byte on disk
        f.seek(1234)
        f.write(b"\xff")
    with pytest.raises(DownloadError, match=f"!= expected {GOOD} .recorded in blob.bin.sha256"):
        prepare("toy", tmp_path / "data")
    assert fetch(spec.remotes[0].url, folder / "blob.bin") == folder / "blob.bin"  # without verify: skipped
    with pytest.raises(DownloadError, match="pinned"):
        fetch(spec.remotes[0].url, folder / "blob.bin", GOOD, verify=True)
