"""The logger choice: logger=none needs nothing; logger=wandb without the optional wandb package stops with
one line saying how to install it (its working runs: tests/test_wandb_logger.py)."""

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from captioning.loggers import build_logger
from captioning.wandb_logger import WandbUnavailable
from tests.conftest import tiny_cfg

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_wandb(monkeypatch):
    """As if wandb were not installed: ``import wandb`` raises ImportError."""
    monkeypatch.setitem(sys.modules, "wandb", None)


def test_logger_wandb_without_wandb_says_how_to_install_it(no_wandb, tmp_path):
    with pytest.raises(WandbUnavailable) as info:
        build_logger(tiny_cfg(tmp_path, "logger=wandb").logger, str(tmp_path / "run"))
    message = str(info.value)
    assert "\n" not in message and 'pip install "captioning[wandb]"' in message and "logger=none" in message
    assert isinstance(info.value, ImportError) and info.value.__cause__ is None  # no chained traceback to read
    assert not (tmp_path / "run").exists()  # nothing written before the check


def test_logger_none_needs_no_wandb(no_wandb, tmp_path):
    assert build_logger(tiny_cfg(tmp_path).logger, str(tmp_path / "run")) is None


def test_the_package_installs_and_imports_without_wandb():
    """`pip install .` brings no wandb (it is the `wandb` extra), and no module needs it to import."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert not [d for d in pyproject["dependencies"] if d.lower().startswith("wandb")]
    assert pyproject["optional-dependencies"]["wandb"] == ["wandb>=0.19"]
    code = ("import importlib, pkgutil, sys; sys.modules['wandb'] = None; import captioning; "
            "[importlib.import_module(m.name) for m in pkgutil.walk_packages(captioning.__path__, 'captioning.')]")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
