"""Seconds per training epoch of the main job, this checkout against an earlier commit, in one run:
`python scripts/benchmark.py loop --before REV [--repeats 3] [overrides]`.

Both versions train one cross-entropy epoch of the default config (shapes data, cached features,
default model and batch) in turn, alternating, so load from other processes hits both alike; each
epoch's own seconds come from the run's history.json (data, features and start-up excluded). The
earlier commit is checked out into a temporary git worktree. Writes the `loop` section of
docs/benchmarks.md with the machine, its load average at start and end, and the command.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks import DRIVER, PROG
from benchmarks.common import BENCHMARKS_MD, ROOT, short_rev, write_report
from captioning.utils.report import machine_line

# the keys that select one cross-entropy epoch without evaluation, before and after the stage schedules
ONE_EPOCH = {"stages": ["schedule.stages.cross_entropy.epochs=1", "schedule.stages.self_critical.epochs=0"],
             "flat": ["schedule.epochs=1", "schedule.self_critical.epochs=0"]}


def epoch_seconds(tree: Path, keys: list[str], work: Path, name: str, extra: list[str]) -> float:
    """Train one epoch with the code in ``tree``; the epoch's seconds from its history.json."""
    run_dir = work / name
    # the training command of that checkout: its scripts/ wrapper where it has one (older commits), else the module
    wrapper = tree / "scripts" / "train.py"
    train = [str(wrapper)] if wrapper.exists() else ["-m", "captioning.commands.train"]
    cmd = [sys.executable, *train, *keys, "data.eval_splits=[]", "evaluate.baselines=[]",
           f"cache_dir={work / 'cache'}", f"hydra.run.dir={run_dir}", *extra]
    env = {**os.environ, "PYTHONPATH": str(tree), "CAPTIONING_DATA": str(work / "data")}
    subprocess.run(cmd, cwd=work, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return float(json.loads((run_dir / "history.json").read_text())["epochs"][0]["seconds"])


def main(argv: list[str]) -> None:
    """Time both versions' epochs, alternating, and write the `loop` section of --report."""
    parser = argparse.ArgumentParser(prog=f"{PROG} loop", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, help="the earlier commit (e.g. a hash or main~3)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", default=None, help="scratch folder (data, feature cache, runs); default: a temp dir")
    parser.add_argument("--report", default=str(BENCHMARKS_MD))
    parser.add_argument("overrides", nargs="*", help="extra config overrides for both versions")
    args = parser.parse_args(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_loop_"))
    before = work / "before"
    if not before.exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(before), args.before], check=True)
    rev = short_rev("HEAD", before)
    staged = any((before / d / "stage").is_dir() for d in ("configs", "captioning/configs"))  # configs moved into the package
    keys_before = ONE_EPOCH["stages"] if staged else ONE_EPOCH["flat"]
    start_line = machine_line()
    epoch_seconds(ROOT, ONE_EPOCH["stages"], work, "warmup", args.overrides)  # data and features, once
    times: dict[str, list[float]] = {"before": [], "after": []}
    for k in range(args.repeats):
        times["before"].append(epoch_seconds(before, keys_before, work, f"before{k}", args.overrides))
        times["after"].append(epoch_seconds(ROOT, ONE_EPOCH["stages"], work, f"after{k}", args.overrides))
        print(f"repeat {k + 1}: before {times['before'][-1]:.1f} s, after {times['after'][-1]:.1f} s", flush=True)
    b, a = (statistics.median(times[v]) for v in ("before", "after"))
    table = "\n".join(["| version | epoch seconds (median) | each |", "| --- | --- | --- |",
                       f"| before ({rev}) | {b:.1f} | {', '.join(f'{t:.1f}' for t in times['before'])} |",
                       f"| after ({short_rev('HEAD', ROOT)}) | {a:.1f} | {', '.join(f'{t:.1f}' for t in times['after'])} |"])
    command = f"{DRIVER} loop --before {args.before} --repeats {args.repeats} {' '.join(args.overrides)}"
    write_report(args.report, "loop", "Training loop: one epoch before and after", command,
                 f"One cross-entropy epoch of the default config (cached features), the two versions alternating. "
                 f"After / before: {a / b:.2f}.\n\n{table}", start_line)
