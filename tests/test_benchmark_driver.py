"""One driver runs every benchmark (scripts/benchmark.py NAME ...): each name reaches its module's options, an
unknown name is refused with the names, and the sections they write keep the rest of the file. Nothing is timed."""

import importlib.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def driver(monkeypatch):
    """scripts/benchmark.py as a module (it puts the checkout on sys.path, as when run; undone after the test)."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    # benchmarks/lm.py sets OMP_WAIT_POLICY when imported: keep it out of later tests' subprocesses
    monkeypatch.setenv("OMP_WAIT_POLICY", os.environ.get("OMP_WAIT_POLICY", "PASSIVE"))
    spec = importlib.util.spec_from_file_location("benchmark_driver", ROOT / "scripts" / "benchmark.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_benchmark_is_a_module_the_driver_reaches(driver, capsys):
    from benchmarks import BENCHMARKS

    assert {"loop", "sampling", "scst_step", "transformer_cache", "lm", "precision"} <= set(BENCHMARKS)
    for name in BENCHMARKS:
        with pytest.raises(SystemExit) as done:
            driver.main([name, "--help"])
        assert done.value.code == 0
        assert f"usage: scripts/benchmark.py {name}" in capsys.readouterr().out
    assert not list((ROOT / "scripts").glob("benchmark_*.py"))  # the one-off scripts live in benchmarks/ now


def test_the_suite_is_the_default_and_lists_the_benchmarks(driver, capsys):
    with pytest.raises(SystemExit) as done:
        driver.main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "--only" in out and "transformer_cache" in out and "scst_step" in out


def test_an_unknown_benchmark_is_named_with_the_choices(driver):
    with pytest.raises(SystemExit, match=r"no benchmark 'loops'; the names are loop, .*precision"):
        driver.main(["loops", "--before", "HEAD"])


def test_a_report_section_is_replaced_and_the_rest_kept(driver, tmp_path, capsys):
    from benchmarks.common import write_report

    report = tmp_path / "bench.md"
    report.write_text("# Benchmarks\n\nintro\n")
    write_report(report, "loop", "Loop", "python scripts/benchmark.py loop --before X", "first", "machine A")
    write_report(report, "loop", "Loop", "python scripts/benchmark.py loop --before Y", "second", "machine B")
    text = report.read_text()
    assert text.startswith("# Benchmarks\n\nintro\n") and text.count("<!-- begin:loop -->") == 1
    assert "`python scripts/benchmark.py loop --before Y`\n\nsecond\n\nmachine B; at end " in text
    assert "first" not in text and "second" in capsys.readouterr().out


def test_scst_step_refuses_a_package_that_is_not_a_checkout(driver, tmp_path):
    from benchmarks.scst_step import use_package

    with pytest.raises(SystemExit, match="no captioning package there"):
        use_package(tmp_path)


def test_reports_name_the_commit_and_whether_the_code_differs_from_it(driver, tmp_path):
    """The head of a report made from trained runs names the checkout's commit, and says when tracked files differ."""
    import subprocess

    from benchmarks.common import code_line

    def git(*args):
        return subprocess.run(["git", "-C", str(tmp_path), *args], capture_output=True, text=True, check=True).stdout

    git("init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    git("add", "a.py")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "a")
    head = git("rev-parse", "--short", "HEAD").strip()
    (tmp_path / "notes.txt").write_text("untracked: not the code\n")
    assert code_line(tmp_path) == f"code at commit {head}"
    (tmp_path / "a.py").write_text("x = 2\n")
    assert code_line(tmp_path) == f"code at commit {head} with uncommitted changes"
