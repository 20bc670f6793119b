"""What the benchmarks share: options, timing with device sync, configs and synthetic images, the commit
compared against and the report sections they write."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from captioning import CONFIG_DIR as CONFIGS  # the package's configs (captioning/configs)
from captioning.utils.report import update_section

ROOT = Path(__file__).resolve().parents[1]  # the checkout: benchmarks/ sits beside the package
BENCHMARKS_MD = ROOT / "docs" / "benchmarks.md"


@dataclass
class Options:
    """Command-line choices every section of the suite reads (see scripts/benchmark.py --help)."""

    quick: bool = False                 # smaller sizes: checks that a section works, not a figure to quote
    repeats: int = 10
    device: str = "cpu"
    amp: str = "none"                   # none | bf16: autocast for the decoder and the encoder on a GPU
    work_dir: Path = Path(".cache/bench")
    scaling_sizes: list[int] = field(default_factory=lambda: [1000, 10000, 50000])
    workers: int = 0                    # data-loader workers for image decoding (0: the encoder's default)

    def pick(self, full: Any, quick: Any) -> Any:
        """``quick`` under --quick, else ``full``."""
        return quick if self.quick else full


def sync(device: str | torch.device) -> None:
    """Wait for queued GPU work, so that wall-clock times measure it."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_it(fn: Callable[[], Any], repeats: int, warmup: int = 2, device: str = "cpu") -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


@contextlib.contextmanager
def stopwatch() -> Iterator[list[float]]:
    """``with stopwatch() as t: ...`` then ``t[0]`` holds the seconds taken."""
    box = [0.0]
    t0 = time.perf_counter()
    try:
        yield box
    finally:
        box[0] = time.perf_counter() - t0


def autocast(device: str, amp: str):
    """bf16 autocast when asked for (``amp='bf16'``), else a no-op context."""
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=amp == "bf16")


def compose(*overrides: str):
    """The main job's config (configs/train.yaml) with Hydra overrides, outside any Hydra app."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    import captioning.config  # noqa: F401 (registers the config schemas the yaml files build on)

    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return hydra_compose("train", overrides=list(overrides))


def shapes_overrides(root: Path, n: int) -> list[str]:
    """Overrides for a synthetic set of ``n`` train images only (val and eval read them too), under ``root``."""
    return [f"data.root={root / f'shapes_{n}'}", f"data.name=bench{n}",  # the splits merge: the others set to 0
            f"data.generator.splits={{train: {n}, val: 0, test: 0, test_novel: 0, val_novel: 0}}",
            "data.generator.novel_splits=[]", "data.val_split=train", "data.eval_splits=[train]"]


def shapes_records(root: Path, n: int) -> list:
    """ImageRecords of ``n`` synthetic images (generated once under ``root``, then reused)."""
    from captioning.data.datasets import load_dataset

    logging.getLogger("captioning.data.shapes").setLevel(logging.WARNING)
    return load_dataset(compose(*shapes_overrides(root, n)).data)["train"]


def build_bench_encoder(opts: Options, *overrides: str):
    """The default encoder (configs/encoder), on the benchmark device, bf16 autocast under --amp bf16."""
    from captioning.features.encoder import build_encoder
    from captioning.utils.schema import plain

    cfg = plain(compose(*overrides).encoder)
    if opts.amp == "bf16":
        cfg["precision"] = "bf16"
    return build_encoder(cfg).to(opts.device), cfg


def show_tell(feature_dim: int, vocab_size: int, cell: str = "lstm", embed_dim: int = 256, hidden_size: int = 512,
              backend: str = "fused"):
    """The benchmarks' decoder: a show_tell model of this size, without dropout, torch's gate init."""
    import captioning.models.show_tell  # noqa: F401 (registers show_tell; `--only beam` imports nothing else that does)
    from captioning.models.base import build_model

    options = {"name": "show_tell", "cell": {"name": cell, "num_layers": 1, "backend": backend},
               "embed_dim": embed_dim, "hidden_size": hidden_size, "dropout": 0.0, "lstm_init": "torch"}
    return build_model(options, feature_dim, vocab_size, max_len=16)


def short_rev(rev: str, repo: Path = ROOT) -> str:
    """The short hash of commit ``rev`` (a hash, a branch, main~3, HEAD) of the git checkout ``repo``."""
    return subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", rev], capture_output=True, text=True,
                          check=True).stdout.strip()


def code_line(repo: Path = ROOT) -> str:
    """The commit of the checkout's code, for the head of a report made from trained runs, and whether its tracked
    files differ from that commit."""
    changed = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                             capture_output=True, text=True, check=True).stdout.strip()
    return f"code at commit {short_rev('HEAD', repo)}" + (" with uncommitted changes" if changed else "")


def write_report(path: str | os.PathLike, name: str, title: str, command: str, body: str, start_line: str) -> str:
    """Write section ``name`` of the markdown file ``path`` (the others are kept) and print it: its title, the
    command, ``body``, then the machine (``start_line``, from machine_line() at the start) and its load now."""
    text = (f"## {title}\n\n`{command.strip()}`\n\n{body.strip()}\n\n"
            f"{start_line}; at end {os.getloadavg()[0]:.2f}\n")
    update_section(path, name, text)
    print(text)
    return text


def evaluate_run(run_dir: Path, overrides: list[str], out_dir: Path) -> dict:
    """``captioning-evaluate checkpoint=<run_dir> <overrides>``, written to ``out_dir``; its metrics."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from captioning.config import register_schemas
    from captioning.evaluation.checkpoint import EvaluateRunConfig, evaluate_checkpoint
    from captioning.utils.schema import build

    register_schemas()  # the yaml files build on the declared schemas, as the command's import registers them
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = hydra_compose("evaluate", overrides=[f"checkpoint={run_dir}", *overrides])
    out_dir.mkdir(parents=True, exist_ok=True)
    return evaluate_checkpoint(build(EvaluateRunConfig, cfg), out_dir)
