"""Settings chosen on val: the same small grid for every row (e.g. each cell), one run per grid point and seed.

The protocol (docs/results.md): every choice is made on val; the test splits are never read here (each run
evaluates ``data.eval_splits=[<val split>]`` only, or with ``split=val_novel`` also that split, on which it then
chooses; overrides that name other splits are refused). Each row
gets the same grid, so the cells are compared each at its own best setting (issue 16, "fair cell
comparison"); the chosen point is the one with the highest val ``metric`` (mean over seeds), and the paired
bootstrap interval of best minus runner-up says whether the choice is more than the noise of val.
make_results then runs the chosen settings at several seeds on the sealed test splits.

    captioning-search jobs=2 schedule.stages.self_critical.epochs=0 \\
        schedule.stages.cross_entropy.lr=1e-3,2e-3,4e-3 model.dropout=0.1,0.2 \\
        row=rnn cell=rnn row=lstm cell=lstm row=gru cell=gru
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path

from captioning.experiments.results import compose_run, git_commit, train_rows
from captioning.utils.io import save_json
from captioning.utils.report import machine_line, update_section
from captioning.utils.schema import ConfigError, option  # ConfigError: a ValueError

SECTION = "val_search"  # the docs/results.md section write_search owns by default
TITLE = "Settings chosen on val: the same grid for every row"


@dataclass
class SearchConfig:
    """captioning/configs/tools/search.yaml (captioning-search): settings chosen on val, one run per point and seed."""

    seeds: int = option(1, "seeds per grid point, 0..N-1", ge=1)
    jobs: int = option(1, "runs trained at once, each in its own process", ge=1)
    overrides: list[str] = option([], "training overrides for every run: on the command line, every key=value "
                                  "that is not an option of this command (before the first row=)")
    grid: dict[str, list[str]] = option({}, "the grid: key -> its values, every combination run; on the command "
                                        "line, a training override with several values (key=v1,v2)")
    rows: dict[str, list[str]] = option({}, "label -> the row's own training overrides, searched with the whole "
                                        "grid: on the command line, row=LABEL followed by its key=value "
                                        "overrides; empty = one row per cell: rnn, lstm, gru")
    metric: str = option("Bleu_4", "the val metric that chooses")
    split: str | None = option(None, "the split metric is read on; null = the data's val split; val_novel chooses "
                               "on the shapes data's unseen colour-shape pairs; never a test split")
    render: bool = option(False, "redraw the section from run_root, no training")
    run_root: str = option("runs/search", "where the runs go")
    out: str = option("docs/results.md", "the markdown file written")
    section: str = option(SECTION, "the marked section of out written")
    title: str = option(TITLE, "that section's heading")


SHOWN = ("Bleu_4", "CIDEr", "acc_scene", "acc_binding")


def grid_points(grid: dict[str, list[str]]) -> list[tuple[str, list[str]]]:
    """Every combination of the grid's values, in order: (label, overrides), the label naming each key by its
    last dotted part, e.g. ``("lr=1e-3_dropout=0.1", ["schedule.stages.cross_entropy.lr=1e-3", "model.dropout=0.1"])``."""
    if not grid:
        return [("", [])]  # no grid: one run per row (and seed), labelled by the row alone
    for key, values in grid.items():
        if not values:
            raise ConfigError(f"grid key {key!r} has no values: give them as {key}=A,B,C")
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
            raise ConfigError(f"--grid takes KEY=V1,V2,...; got {item!r}")
        if key in grid:
            raise ConfigError(f"--grid names {key!r} twice")
        grid[key] = [v for v in values.split(",") if v]
    return grid


def search(overrides: list[str], rows: dict[str, list[str]], grid: dict[str, list[str]], jobs: int = 1,
           seeds: int = 1, run_root: str = "runs/search", out: str = "docs/results.md",
           metric: str = "Bleu_4", section: str = SECTION, title: str = TITLE, split: str | None = None) -> dict:
    """Train every (row, grid point) at seeds 0..seeds-1 into ``<run_root>/<row>_<point>/seed<k>``, evaluated
    on val only; save ``summary.json`` and write the section ``section`` of ``out``. Returns the chosen
    overrides per row. Without a grid each row is one setting (``<run_root>/<row>/seed<k>``), and the section
    compares every row with the first (paired intervals): an ablation on val. ``split`` chooses on another
    split than the data's val split, never a test one (e.g. ``val_novel``, the shapes data's unseen
    colour-shape pairs): the runs then evaluate both."""
    if any(o.split("=", 1)[0].lstrip("+~") == "data.eval_splits" for row in [overrides, *rows.values()] for o in row):
        raise ConfigError("the search evaluates the val split only and sets data.eval_splits itself; "
                         "drop data.eval_splits from the overrides (test splits are for make_results)")
    if not section or not section.replace("_", "").isalnum():
        raise ConfigError(f"section names a marked section of {out}: letters, digits and _ only, got {section!r}")
    val_split = compose_run(list(overrides)).data.val_split
    if not val_split:
        raise ConfigError("the search chooses on the val split, and data.val_split is null: name one")
    split = split or val_split
    if "test" in split:
        raise ConfigError(f"the search chooses on a validation split, not {split!r}: test splits are for make_results")
    evaluated = [val_split] + ([split] if split != val_split else [])
    common = [f"data.eval_splits=[{','.join(evaluated)}]", *overrides]
    points = grid_points(grid)
    labelled = {run_label(row, point): [*keys, *point_keys] for row, keys in rows.items() for point, point_keys in points}
    runs, seconds = train_rows(common, labelled, seeds, jobs, run_root)
    meta = {"overrides": common, "rows": rows, "grid": grid, "seeds": list(range(seeds)), "seconds": seconds,
            "jobs": jobs, "metric": metric, "split": split, "val_split": val_split, "section": section, "title": title,
            "run_root": run_root, "machine": machine_line(), "commit": git_commit()}
    save_json({**runs, "_meta": meta}, Path(run_root) / "summary.json")
    return write_search(run_root, out)


def run_label(row: str, point: str) -> str:
    """The folder of a (row, grid point) under the run root: ``<row>_<point>``, or ``<row>`` without a grid."""
    return f"{row}_{point}" if point else row


def choose(summary: dict, row: str, points: list[tuple[str, list[str]]], split: str, metric: str):
    """Grid points of ``row`` ordered best first by the mean over seeds of ``metric`` on ``split``."""
    scored = []
    for point, keys in points:
        per_seed = summary[run_label(row, point)]
        values = [m[split][metric] for m in per_seed.values()]
        scored.append((sum(values) / len(values), point, keys))
    return sorted(scored, key=lambda t: -t[0])


def write_search(run_root: str = "runs/search", out: str = "docs/results.md", resamples: int = 10_000) -> dict:
    """Render the search's section of ``out`` from ``<run_root>/summary.json`` (no training); returns the
    chosen overrides per row (with a grid) or {} (rows only)."""
    path = Path(run_root) / "summary.json"
    if not path.is_file():
        raise FileNotFoundError(f"no saved search to render: {path} is missing; run `captioning-search` first")
    summary = json.loads(path.read_text())
    meta = summary.pop("_meta")
    lines, chosen, verdicts = search_table(summary, meta, run_root, resamples)
    body = search_markdown(meta, lines, verdicts)
    update_section(out, meta.get("section", SECTION), body, title="Results")
    return chosen


def search_table(summary: dict, meta: dict, run_root: str, resamples: int) -> tuple[list[str], dict, list[str]]:
    """The search table's markdown lines (one per row and grid point, the chosen point in bold), the chosen
    overrides per row (with a grid) and the paired verdicts: best minus runner-up per row, or each row minus
    the first (rows only)."""
    split, metric, grid, rows = meta["split"], meta["metric"], meta["grid"], meta["rows"]
    points, short = grid_points(grid), [k.rsplit(".", 1)[-1] for k in grid]
    lines = ["| row | " + "".join(f"{k} | " for k in short) + " | ".join(f"{split} {m}" for m in SHOWN)
             + " | best epoch | min |", "|---|" + "---|" * len(short) + "---:|" * (len(SHOWN) + 2)]
    chosen, verdicts = {}, []
    for row in rows:
        ranked = choose(summary, row, points, split, metric)
        best = ranked[0][1] if grid else None
        if grid:
            chosen[row] = dict(zip(grid, [k.split("=", 1)[1] for k in ranked[0][2]]))
        lines += [search_line(summary, meta, run_root, row, point, keys, best) for point, keys in points]
        if grid and len(ranked) > 1:
            verdicts.append(runner_up_verdict(summary, meta, run_root, row, ranked, resamples))
    if not grid:
        verdicts += rows_verdicts(summary, meta, run_root, resamples)
    return lines, chosen, verdicts


def search_line(summary: dict, meta: dict, run_root: str, row: str, point: str, keys: list[str],
                best: str | None) -> str:
    """One line of the search table: the point's values, the shown metrics (mean ± sd over seeds; bold at
    ``best``), each seed's best epoch and the minutes per run."""
    from captioning.evaluation.stats import mean_sd

    split, n_seeds, label = meta["split"], len(meta["seeds"]), run_label(row, point)
    per_seed = list(summary[label].values())
    cells = []
    for k in SHOWN:
        if not all(k in m[split] for m in per_seed):
            cells.append("")
            continue
        mean, sd = mean_sd([m[split][k] for m in per_seed])
        text = f"{mean:.3f}" + (f" ± {sd:.3f}" if n_seeds > 1 else "")
        cells.append(f"**{text}**" if point == best else text)
    epochs = [_best_epoch(d) for d in _seed_dirs(summary, run_root, label)]
    minutes = sum(meta["seconds"][label]) / len(meta["seconds"][label]) / 60
    return (f"| {row} | " + "".join(f"{k.split('=', 1)[1]} | " for k in keys) + " | ".join(cells)
            + f" | {'/'.join(epochs)} | {minutes:.1f} |")


def runner_up_verdict(summary: dict, meta: dict, run_root: str, row: str, ranked: list, resamples: int) -> str:
    """A grid row's verdict line: its best point minus the runner-up on the choosing metric, paired interval."""
    from captioning.experiments.compare import paired_comparison

    split, metric, best = meta["split"], meta["metric"], ranked[0][1]
    diff = paired_comparison(_seed_dirs(summary, run_root, run_label(row, best)),
                             _seed_dirs(summary, run_root, run_label(row, ranked[1][1])), [split], [metric],
                             resamples=resamples)[0]
    return (f"- {row}: {best} ({metric} {ranked[0][0]:.3f}); minus the runner-up {ranked[1][1]}: "
            f"{diff['difference']:+.3f} [{diff['low']:+.3f}, {diff['high']:+.3f}]"
            + ("" if diff["excludes_zero"] else " (not distinguishable from it)"))


def rows_verdicts(summary: dict, meta: dict, run_root: str, resamples: int) -> list[str]:
    """Without a grid: each row after the first minus the first, every metric, paired intervals."""
    from captioning.experiments.compare import paired_comparison

    first, verdicts = next(iter(meta["rows"])), []
    for row in list(meta["rows"])[1:]:
        found = paired_comparison(_seed_dirs(summary, run_root, row), _seed_dirs(summary, run_root, first),
                                  [meta["split"]], resamples=resamples)
        verdicts.append(f"- {row} minus {first}: " + "; ".join(
            f"{d['metric']} {d['difference']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]" for d in found))
    return verdicts


def search_command(meta: dict) -> str:
    """The captioning-search command line that made the saved runs."""
    split, grid, rows = meta["split"], meta["grid"], meta["rows"]
    grid_args = "".join(f" {k}={','.join(v)}" for k, v in grid.items())  # several values: an axis of the grid
    row_args = "".join(f" row={label} {' '.join(keys)}".rstrip() for label, keys in rows.items())
    rest = "".join(f" {o}" for o in meta["overrides"] if not o.startswith("data.eval_splits="))
    options = f"seeds={len(meta['seeds'])}" + (f" jobs={meta['jobs']}" if meta.get("jobs", 1) > 1 else "")
    section, title = meta.get("section", SECTION), meta.get("title", TITLE)
    if meta.get("run_root", "runs/search") != "runs/search":
        options += f" run_root={meta['run_root']}"
    if section != SECTION:
        options += f" section={section} title='{title}'"
    if split != meta.get("val_split", split):
        options += f" split={split}"
    return " ".join(f"captioning-search {options}{rest}{grid_args}{row_args}".split())


def search_markdown(meta: dict, lines: list[str], verdicts: list[str]) -> str:
    """The search section's markdown: machine, command, protocol prose, the table and the paired verdicts."""
    split, metric, grid, n_seeds = meta["split"], meta["metric"], meta["grid"], len(meta["seeds"])
    times = [s for v in meta["seconds"].values() for s in v]
    how = (f"the bold point of each row has the highest {split} {metric} (mean over seeds) and is the one the results "
           "tables use" if grid else "each row is one setting, compared with the first row below")
    spread = f"mean ± sd over seeds 0..{n_seeds - 1}" if n_seeds > 1 else "one seed (0)"
    intro = (f"Best minus runner-up on {split} {metric}" if grid else f"Each row minus {next(iter(meta['rows']))}") + (
        f", paired 95% bootstrap interval over the {split} images (same seeds, same images):")
    return (f"## {meta.get('title', TITLE)}\n\n"
            f"Machine: {meta.get('machine') or machine_line()}"
            + (f"; code at commit {meta['commit']}" if meta.get("commit") else "") + "\n\n"
            f"Command: `{search_command(meta)}` ({len(times)} runs, {sum(times) / 3600:.1f} h of run time in all)\n\n"
            f"Every run is scored on `{'` and `'.join(dict.fromkeys([meta.get('val_split', split), split]))}` only "
            f"({spread}; captioning/experiments/search.py); {how}. Best epoch: the epoch "
            "whose greedy val BLEU-4 (the split's first `val_max_images` images) picked the checkpoint, per seed; "
            "min: minutes per run, evaluation included.\n\n"
            + "\n".join(lines) + f"\n\n{intro}\n\n" + "\n".join(verdicts))


def _seed_dirs(summary: dict, run_root: str, label: str) -> list[Path]:
    """The run directories of one (row, point) label, one per saved seed."""
    return [Path(run_root) / label / f"seed{s}" for s in summary[label]]


def _best_epoch(run_dir: Path) -> str:
    history = run_dir / "history.json"
    if not history.is_file():
        return "?"
    h = json.loads(history.read_text())
    stage = h.get("best_stage", "cross_entropy")
    return f"{h.get('best_epoch', '?')}" + ("" if stage == "cross_entropy" else f" ({stage})")
