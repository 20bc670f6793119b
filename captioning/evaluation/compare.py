"""Compare the runs of a sweep: their metrics.json side by side as markdown, CSV and a bar chart.

A sweep directory is what `python scripts/train.py -m cell=rnn,lstm,gru` writes
(`runs/multirun/<date>/<time>/<job>_<overrides>/`); any folder holding run directories works. Each run
is labelled by the Hydra overrides that differ between the runs (e.g. ``cell=gru``), read from its
``.hydra/overrides.yaml``.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

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
        raise FileNotFoundError(f"no runs under {root}: expected folders with metrics.json (from scripts/train.py)")
    runs = []
    for d in sorted(dirs, key=_job_order):
        metrics_file = d / "metrics.json"
        metrics = json.loads(metrics_file.read_text(encoding="utf-8")) if metrics_file.is_file() else None
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
