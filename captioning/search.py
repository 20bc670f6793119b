"""Settings chosen on val: the same small grid for every row (e.g. each cell), one run per grid point and seed.

The protocol (docs/results.md): every choice is made on val; the test splits are never read here (each run
evaluates ``data.eval_splits=[<val split>]`` only; overrides that name other splits are refused). Each row
gets the same grid, so the cells are compared each at its own best setting (issue 16, "fair cell
comparison"); the chosen point is the one with the highest val ``metric`` (mean over seeds), and the paired
bootstrap interval of best minus runner-up says whether the choice is more than the noise of val.
make_results then runs the chosen settings at several seeds on the sealed test splits.

    captioning-search --jobs 2 schedule.stages.self_critical.epochs=0 \\
        --grid schedule.stages.cross_entropy.lr=1e-3,2e-3,4e-3 model.dropout=0.1,0.2 \\
        --row rnn cell=rnn --row lstm cell=lstm --row gru cell=gru
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from captioning.results import compose_run, git_commit, train_rows
from captioning.utils.io import save_json
from captioning.utils.report import machine_line, update_section

SECTION = "val_search"  # the docs/results.md section write_search owns
SHOWN = ("Bleu_4", "CIDEr", "acc_scene", "acc_binding")


def grid_points(grid: dict[str, list[str]]) -> list[tuple[str, list[str]]]:
    """Every combination of the grid's values, in order: (label, overrides), the label naming each key by its
    last dotted part, e.g. ``("lr=1e-3_dropout=0.1", ["schedule.stages.cross_entropy.lr=1e-3", "model.dropout=0.1"])``."""
    if not grid:
        return [("default", [])]
    for key, values in grid.items():
        if not values:
            raise ValueError(f"grid key {key!r} has no values: give them as {key}=A,B,C")
    points = []
    for values in itertools.product(*grid.values()):
        keys = [f"{k}={v}" for k, v in zip(grid, values)]
        points.append(("_".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in zip(grid, values)), keys))
    return points


def parse_grid(items: list[str]) -> dict[str, list[str]]:
    """``["a.b=1,2", "c=x"]`` -> ``{"a.b": ["1", "2"], "c": ["x"]}``, with a clear error for anything else."""
    grid = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not key or not values:
            raise ValueError(f"--grid takes KEY=V1,V2,...; got {item!r}")
        if key in grid:
            raise ValueError(f"--grid names {key!r} twice")
        grid[key] = [v for v in values.split(",") if v]
    return grid


def search(overrides: list[str], rows: dict[str, list[str]], grid: dict[str, list[str]], jobs: int = 1,
           seeds: int = 1, run_root: str = "runs/search", out: str = "docs/results.md",
           metric: str = "Bleu_4") -> dict:
    """Train every (row, grid point) at seeds 0..seeds-1 into ``<run_root>/<row>_<point>/seed<k>``, evaluated
    on val only; save ``summary.json`` and write the search section of ``out``. Returns the chosen overrides
    per row."""
    if any(o.split("=", 1)[0].lstrip("+~") == "data.eval_splits" for row in [overrides, *rows.values()] for o in row):
        raise ValueError("the search evaluates the val split only and sets data.eval_splits itself; "
                         "drop data.eval_splits from the overrides (test splits are for make_results)")
    val_split = compose_run(list(overrides)).data.val_split
    if not val_split:
        raise ValueError("the search chooses on the val split, and data.val_split is null: name one")
    common = [f"data.eval_splits=[{val_split}]", *overrides]
    points = grid_points(grid)
    labelled = {f"{row}_{point}": [*keys, *point_keys] for row, keys in rows.items() for point, point_keys in points}
    runs, seconds = train_rows(common, labelled, seeds, jobs, run_root)
    meta = {"overrides": common, "rows": rows, "grid": grid, "seeds": list(range(seeds)), "seconds": seconds,
            "jobs": jobs, "metric": metric, "split": val_split, "machine": machine_line(), "commit": git_commit()}
    save_json({**runs, "_meta": meta}, Path(run_root) / "summary.json")
    return write_search(run_root, out)


def choose(summary: dict, row: str, points: list[tuple[str, list[str]]], split: str, metric: str):
    """Grid points of ``row`` ordered best first by the mean over seeds of ``metric`` on ``split``."""
    scored = []
    for point, keys in points:
        per_seed = summary[f"{row}_{point}"]
        values = [m[split][metric] for m in per_seed.values()]
        scored.append((sum(values) / len(values), point, keys))
    return sorted(scored, key=lambda t: -t[0])


def write_search(run_root: str = "runs/search", out: str = "docs/results.md", resamples: int = 10_000) -> dict:
    """Render the search section of ``out`` from ``<run_root>/summary.json`` (no training); returns the chosen
    overrides per row."""
    from captioning.evaluation.compare import paired_comparison

    path = Path(run_root) / "summary.json"
    if not path.is_file():
        raise FileNotFoundError(f"no saved search to render: {path} is missing; run `python scripts/search.py` first")
    summary = json.loads(path.read_text())
    meta = summary.pop("_meta")
    split, metric, grid, rows = meta["split"], meta["metric"], meta["grid"], meta["rows"]
    points = grid_points(grid)
    short = [k.rsplit(".", 1)[-1] for k in grid]
    n_seeds = len(meta["seeds"])
    lines = ["| row | " + " | ".join(short) + " | " + " | ".join(f"val {m}" for m in SHOWN)
             + " | best epoch | min |", "|---|" + "---|" * len(short) + "---:|" * (len(SHOWN) + 2)]
    chosen, verdicts = {}, []
    for row in rows:
        ranked = choose(summary, row, points, split, metric)
        best = ranked[0][1]
        chosen[row] = dict(zip(grid, [k.split("=", 1)[1] for k in ranked[0][2]]))
        for point, keys in points:
            label = f"{row}_{point}"
            per_seed = list(summary[label].values())
            means = [sum(m[split][k] for m in per_seed) / len(per_seed) if all(k in m[split] for m in per_seed)
                     else None for k in SHOWN]
            cells = [f"**{v:.3f}**" if point == best and v is not None else ("" if v is None else f"{v:.3f}")
                     for v in means]
            epochs = [_best_epoch(Path(run_root) / label / f"seed{s}") for s in summary[label]]
            minutes = sum(meta["seconds"][label]) / len(meta["seconds"][label]) / 60
            values = [k.split("=", 1)[1] for k in keys]
            lines.append(f"| {row} | " + " | ".join(values) + " | " + " | ".join(cells)
                         + f" | {'/'.join(epochs)} | {minutes:.1f} |")
        if len(ranked) > 1:
            dirs = lambda p: [Path(run_root) / f"{row}_{p}" / f"seed{s}" for s in summary[f"{row}_{p}"]]  # noqa: E731
            diff = paired_comparison(dirs(best), dirs(ranked[1][1]), [split], [metric], resamples=resamples)[0]
            verdicts.append(f"- {row}: {best} ({metric} {ranked[0][0]:.3f}); minus the runner-up {ranked[1][1]}: "
                            f"{diff['difference']:+.3f} [{diff['low']:+.3f}, {diff['high']:+.3f}]"
                            + ("" if diff["excludes_zero"] else " (not distinguishable from it)"))
    grid_args = " ".join(f"{k}={','.join(v)}" for k, v in grid.items())
    row_args = " ".join(f"--row {label} {' '.join(keys)}" for label, keys in rows.items())
    rest = [o for o in meta["overrides"] if not o.startswith("data.eval_splits=")]
    jobs = f" --jobs {meta['jobs']}" if meta.get("jobs", 1) > 1 else ""
    cmd = f"python scripts/search.py --seeds {n_seeds}{jobs} {' '.join(rest)} --grid {grid_args} {row_args}"
    times = [s for v in meta["seconds"].values() for s in v]
    body = (f"## Settings chosen on val: the same grid for every row\n\n"
            f"Machine: {meta.get('machine') or machine_line()}"
            + (f"; code at commit {meta['commit']}" if meta.get("commit") else "") + "\n\n"
            f"Command: `{cmd}` ({len(times)} runs, {sum(times) / 3600:.1f} h of run time in all)\n\n"
            f"Every run is scored on `{split}` only ({n_seeds} seed{'s' if n_seeds > 1 else ''} per point; "
            f"captioning/search.py); the bold point of each row has the highest val {metric} and is the one "
            "the results tables use. Best epoch: the epoch whose greedy val BLEU-4 (the split's first images, "
            "`val_max_images`) picked the checkpoint; min: minutes per run, evaluation included.\n\n"
            + "\n".join(lines)
            + f"\n\nBest minus runner-up on val {metric}, paired 95% bootstrap interval over the "
            f"{split} images:\n\n" + "\n".join(verdicts))
    update_section(out, SECTION, body, title="Results")
    return chosen


def _best_epoch(run_dir: Path) -> str:
    history = run_dir / "history.json"
    if not history.is_file():
        return "?"
    h = json.loads(history.read_text())
    stage = h.get("best_stage", "cross_entropy")
    return f"{h.get('best_epoch', '?')}" + ("" if stage == "cross_entropy" else f" ({stage})")
