"""Compare the runs of a sweep: their metrics.json side by side as markdown, CSV and a bar chart.

A sweep directory is what `captioning-train -m cell=rnn,lstm,gru` writes
(`runs/multirun/<date>/<time>/<job>_<overrides>/`); any folder holding run directories works. Each run
is labelled by the Hydra overrides that differ between the runs (e.g. ``cell=gru``), read from its
``.hydra/overrides.yaml``.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from captioning.utils.files import read_json
from captioning.utils.io import atomic_write
from captioning.evaluation.plots import bar_chart_png

log = logging.getLogger(__name__)

DEFAULT_METRICS = ("Bleu_1", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr")  # those present in the runs are shown
RUN_COLUMNS = ("val BLEU-4", "best epoch", "minutes")  # from metrics.json's "_run" record
UNRANKED = ("run", "best epoch", "minutes")  # columns where the largest value is not the best


@dataclass
class RunResult:
    """One run of the sweep: where it is, what was overridden, and its metrics (None: unfinished)."""

    path: Path
    overrides: dict[str, str]
    metrics: dict | None
    label: str = ""


def _job_order(path: Path) -> tuple:
    """Hydra names jobs `<num>_<overrides>`: sort by that number, numerically, then by name."""
    match = re.match(r"(\d+)", path.name)
    return (str(path.parent), int(match.group(1)) if match else 1 << 30, path.name)


def _read_overrides(run_dir: Path) -> dict[str, str]:
    """The run's command-line overrides as {key: value} (empty when Hydra did not record them)."""
    from omegaconf import OmegaConf

    file = run_dir / ".hydra" / "overrides.yaml"
    if not file.is_file():
        return {}
    pairs = [str(o).split("=", 1) for o in OmegaConf.load(file)]
    return {p[0].lstrip("+~"): p[1] if len(p) > 1 else "" for p in pairs}


def load_runs(sweep_dir: str | Path) -> list[RunResult]:
    """Every run directory under ``sweep_dir`` (has metrics.json or .hydra/), labelled by its distinct overrides."""
    root = Path(sweep_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"sweep directory {root} does not exist: pass e.g. runs/multirun/<date>/<time>")
    dirs = {p.parent for p in root.rglob("metrics.json")} | {p.parent.parent for p in root.rglob(".hydra/overrides.yaml")}
    if not dirs:
        raise FileNotFoundError(f"no runs under {root}: expected folders with metrics.json (from captioning-train)")
    runs = []
    for d in sorted(dirs, key=_job_order):
        metrics_file = d / "metrics.json"
        metrics = read_json(metrics_file, "metrics file") if metrics_file.is_file() else None
        runs.append(RunResult(d, _read_overrides(d), metrics))
    varying = [k for k in dict.fromkeys(k for r in runs for k in r.overrides)
               if len({r.overrides.get(k) for r in runs}) > 1]
    for r in runs:
        fallback = str(r.path.relative_to(root)) if r.path != root else r.path.name
        r.label = ",".join(f"{k}={r.overrides.get(k, '-')}" for k in varying) or fallback
    return runs


def model_splits(runs: Sequence[RunResult]) -> list[str]:
    """The evaluated splits of the model itself (not the baselines' "<name>/<split>" entries)."""
    return list(dict.fromkeys(k for r in runs if r.metrics for k in r.metrics if "/" not in k and not k.startswith("_")))


def comparison_table(runs: Sequence[RunResult], splits: Sequence[str] | None = None,
                     metrics: Sequence[str] | None = None) -> tuple[list[str], list[list]]:
    """Header and rows: one row per run; a column per (split, metric) present, then val BLEU-4, epoch, minutes."""
    splits = list(splits or model_splits(runs))
    present = {m for r in runs if r.metrics for s in splits for m in r.metrics.get(s, {})}
    metrics = [m for m in DEFAULT_METRICS if m in present] if metrics is None else list(metrics)
    header = ["run"] + [f"{s} {m}" for s in splits for m in metrics] + list(RUN_COLUMNS)
    rows = []
    for r in runs:
        if r.metrics is None:
            rows.append([r.label] + [None] * (len(header) - 1))
            continue
        info = r.metrics.get("_run", {})
        seconds = info.get("seconds_total")
        rows.append([r.label] + [r.metrics.get(s, {}).get(m) for s in splits for m in metrics]
                    + [info.get("val_bleu4"), info.get("best_epoch"), None if seconds is None else seconds / 60])
    return header, rows


def _cell(value, bold: bool = False) -> str:
    if value is None:
        return "-"
    text = value if isinstance(value, str) else (str(value) if isinstance(value, int) else f"{value:.3f}")
    return f"**{text}**" if bold else text


def to_markdown(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A GitHub markdown table; the best (largest) value of each metric column in bold."""
    ranked = [j for j, h in enumerate(header) if h not in UNRANKED]
    best = {j: max((r[j] for r in rows if r[j] is not None), default=None) for j in ranked}
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    for r in rows:
        cells = [_cell(v, bold=len(rows) > 1 and j in best and v is not None and v == best[j]) for j, v in enumerate(r)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def to_csv(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    """The table as CSV text (empty cells for missing values, full precision)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([["" if v is None else v for v in r] for r in rows])
    return buffer.getvalue()


def compare_sweep(sweep_dir: str | Path, out_dir: str | Path | None = None, name: str = "comparison",
                  splits: Sequence[str] | None = None, metrics: Sequence[str] | None = None,
                  chart_metric: str = "Bleu_4") -> dict[str, Path | str]:
    """Write <name>.md, <name>.csv and <name>.png (``chart_metric`` per split and run); returns paths + markdown."""
    runs = load_runs(sweep_dir)
    done = [r for r in runs if r.metrics is not None]
    if not done:
        raise FileNotFoundError(f"none of the {len(runs)} runs under {sweep_dir} has a metrics.json yet (unfinished?)")
    for r in runs:
        if r.metrics is None:
            log.warning("run %s has no metrics.json (failed or still running): shown as '-'", r.path)
    out = Path(out_dir) if out_dir is not None else Path(sweep_dir)
    header, rows = comparison_table(runs, splits, metrics)
    chart_splits = list(splits or model_splits(done))
    series = {s: [r.metrics.get(s, {}).get(chart_metric) for r in done] for s in chart_splits}
    png = bar_chart_png([r.label for r in done], series, out / f"{name}.png", title=f"{chart_metric} by run",
                        ylabel=chart_metric)
    markdown = (f"Runs in `{sweep_dir}` ({len(done)} of {len(runs)} finished).\n\n" + to_markdown(header, rows)
                + f"\n\n![{chart_metric} by run]({png.name})\n")
    with atomic_write(out / f"{name}.md", "w") as f:
        f.write(markdown)
    with atomic_write(out / f"{name}.csv", "w") as f:
        f.write(to_csv(header, rows))
    return {"markdown": markdown, "md": out / f"{name}.md", "csv": out / f"{name}.csv", "png": png}


# --- seeds and paired intervals over images ----------------------------------------------------------

HEADLINE = ("Bleu_4", "CIDEr", "acc_scene", "acc_binding")  # the metrics that carry intervals


def is_run(path: Path) -> bool:
    """A training run (its scores in ``eval/``) or an evaluation's output folder (``captioning-evaluate``:
    its ``per_image_<split>.json`` at the top)."""
    return (path / "eval").is_dir() or any(path.glob("per_image_*.json"))


def run_dirs(paths: Sequence[str | Path]) -> list[Path]:
    """Run directories from paths that are runs (or evaluations) or folders of them (e.g. one per seed)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if is_run(p):
            out.append(p)
            continue
        children = sorted((c for c in p.iterdir() if c.is_dir() and is_run(c)), key=_job_order) if p.is_dir() else []
        if not children:
            raise FileNotFoundError(f"{p} is not a run directory (no eval/ inside) nor an evaluation's folder "
                                    "(no per_image_<split>.json), and holds none")
        out.extend(children)
    return out


def per_image_file(run_dir: str | Path, split: str) -> Path:
    """``<run_dir>/eval/per_image_<split>.json`` of a run, or ``<run_dir>/per_image_<split>.json`` of an evaluation."""
    nested = Path(run_dir) / "eval" / f"per_image_{split}.json"
    flat = Path(run_dir) / f"per_image_{split}.json"
    return flat if not nested.is_file() and flat.is_file() else nested


def load_per_image(run_dir: str | Path, split: str) -> list[dict]:
    """The entries of the run's (or evaluation's) ``per_image_<split>.json`` (one per image)."""
    path = per_image_file(run_dir, split)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: was split {split!r} evaluated in {run_dir}?")
    return read_json(path, "per-image scores")


def seed_rows(dirs: Sequence[str | Path], split: str, metric: str, order: Sequence | None = None):
    """(rows (seeds, images, k), statistic, image order) of a metric over runs of the same images,
    aligned by image id (``order``: the ids in the order wanted; default: the first run's)."""
    from captioning.evaluation.stats import metric_rows

    stacked, statistic = [], None
    for d in dirs:
        by_id = {e["image_id"]: e for e in load_per_image(d, split)}
        order = list(by_id) if order is None else list(order)
        if set(by_id) != set(order):
            raise ValueError(f"{d} scored other images on {split!r} than the runs it is compared with "
                             f"({len(by_id)} vs {len(order)} images): paired intervals need the same images")
        rows, statistic = metric_rows([by_id[i] for i in order], metric)
        stacked.append(rows)
    return np.stack(stacked), statistic, order


def seed_interval(dirs: Sequence[str | Path], split: str, metric: str, resamples: int = 10_000,
                  level: float = 0.95, seed: int = 0):
    """Bootstrap interval over images of ``metric`` averaged over the runs (seeds) in ``dirs``."""
    from captioning.evaluation.stats import bootstrap_ci

    rows, statistic, _ = seed_rows(dirs, split, metric)
    return bootstrap_ci(rows, statistic, resamples=resamples, level=level, seed=seed)


def _run_seed(run_dir: Path) -> int | None:
    file = run_dir / "metrics.json"
    info = read_json(file, "metrics file").get("_run", {}) if file.is_file() else {}
    if "seed" in info:
        return info["seed"]
    config = run_dir / ".hydra" / "config.yaml"
    if config.is_file():
        from omegaconf import OmegaConf

        return OmegaConf.load(config).get("seed")
    return None


def _splits_of(run_dir: Path) -> list[str]:
    file = run_dir / "metrics.json"
    if file.is_file():
        metrics = read_json(file, "metrics file")
        return [k for k in metrics if "/" not in k and not k.startswith("_")]
    files = [*(run_dir / "eval").glob("per_image_*.json"), *run_dir.glob("per_image_*.json")]
    return sorted({p.stem[len("per_image_"):] for p in files})


def paired_comparison(dirs_a: Sequence[str | Path], dirs_b: Sequence[str | Path],
                      splits: Sequence[str] | None = None, metrics: Sequence[str] | None = None,
                      resamples: int = 10_000, level: float = 0.95, seed: int = 0) -> list[dict]:
    """Per (split, metric): A and B averaged over their runs (seeds), A - B, and the paired bootstrap
    interval of A - B over the images both were scored on (stats.paired_bootstrap). ``metrics`` default:
    those of ``HEADLINE`` with per-image values in the runs."""
    from captioning.evaluation.stats import paired_bootstrap

    a, b = run_dirs(dirs_a), run_dirs(dirs_b)
    seeds_a, seeds_b = sorted(map(str, map(_run_seed, a))), sorted(map(str, map(_run_seed, b)))
    if seeds_a != seeds_b:
        log.warning("the two sets were trained with different seeds (%s vs %s): the difference mixes in "
                    "seed luck that the same seeds would share", seeds_a, seeds_b)
    rows = []
    for split in splits or _splits_of(a[0]):
        for metric in metrics or HEADLINE:
            try:
                ra, statistic, order = seed_rows(a, split, metric)
                rb, _, _ = seed_rows(b, split, metric, order)
            except KeyError:
                if metrics:  # asked for by name: say why it cannot be shown
                    raise
                continue  # e.g. no CIDEr with metrics=bleu, no scene metrics on COCO
            diff = paired_bootstrap(ra, rb, statistic, resamples=resamples, level=level, seed=seed)
            mean_a = float(statistic(ra.sum(axis=1)).mean())
            rows.append({"split": split, "metric": metric, "A": mean_a, "B": mean_a - diff.estimate,
                         "difference": diff.estimate, "low": diff.low, "high": diff.high, "level": level,
                         "excludes_zero": diff.excludes_zero, "images": ra.shape[1],
                         "seeds": (ra.shape[0], rb.shape[0])})
    return rows


def paired_markdown(rows: Sequence[dict], label_a: str = "A", label_b: str = "B") -> str:
    """The paired comparison as a markdown table, with a verdict per row."""
    if not rows:
        return "(no metric with per-image values in both sets of runs)"
    level = f"{rows[0]['level']:.0%}"
    lines = [f"| split | metric | {label_a} | {label_b} | {label_a} - {label_b} | {level} paired interval | "
             "excludes 0 |", "|---|---|---:|---:|---:|---|---|"]
    for r in rows:
        verdict = (f"yes: {label_a if r['difference'] > 0 else label_b} higher" if r["excludes_zero"]
                   else "no: not distinguishable")
        d, lo, hi = (round(r[k], 3) + 0.0 for k in ("difference", "low", "high"))  # no "-0.000"
        lines.append(f"| {r['split']} | {r['metric']} | {r['A']:.3f} | {r['B']:.3f} | {d:+.3f} | "
                     f"[{lo:+.3f}, {hi:+.3f}] | {verdict} |")
    seeds = rows[0]["seeds"]
    counts = {r["split"]: r["images"] for r in rows}  # each split's own number of images
    images = (f"{rows[0]['images']} images per split" if len(set(counts.values())) == 1
              else "images: " + ", ".join(f"{n} in {split}" for split, n in counts.items()))
    return "\n".join(lines) + (f"\n\n{images}; {seeds[0]} vs {seeds[1]} runs (seeds), "
                               "each side averaged over its runs; intervals resample images (paired bootstrap).")
