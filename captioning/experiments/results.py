"""The results tables of docs/results.md: every cell at N seeds and the baselines on every evaluation split.

The protocol (docs/results.md): choices are made on val; test and test_novel are scored here, for the
final configurations only; each model is trained at N seeds (``seeds=N``, default 3) and reported as
mean +- sd over seeds; the headline metrics carry a 95% bootstrap interval over images
(captioning/evaluation/stats.py); the chance line (a guesser knowing the training distribution) and the
ceiling (a reference caption scored as the hypothesis) bound the scene accuracies.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from hydra import compose, initialize_config_dir

from captioning import CONFIG_DIR
from captioning.utils.io import save_json
from captioning.utils.report import machine_line, update_section
from captioning.utils.schema import ConfigError, option, plain  # ConfigError: a ValueError

COLUMNS = ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "CIDEr", "CIDEr_official", "acc_scene", "acc_binding",
           "acc_count", "acc_colour", "acc_shape", "acc_size", "acc_position", "acc_relation", "acc_relation_strict"]
HEADLINE = ("Bleu_4", "CIDEr", "acc_scene", "acc_binding")  # with bootstrap intervals over images
SECTION = "shapes_protocol"  # the docs/results.md section write_results owns by default
TITLE = "cells vs baselines, under the protocol"  # its heading, after the data's name


@dataclass
class MakeResultsConfig:
    """captioning/configs/tools/make_results.yaml (captioning-make-results): the test-split table of final runs."""

    seeds: int = option(3, "seeds per row, 0..N-1", ge=1)
    jobs: int = option(1, "runs trained at once, each in its own process", ge=1)
    overrides: list[str] = option([], "training overrides for every run: on the command line, every key=value "
                                  "that is not an option of this command (before the first row=)")
    rows: dict[str, list[str]] = option({}, "label -> the row's own training overrides: on the command line, "
                                        "row=LABEL followed by its key=value overrides; empty = one row per cell "
                                        "(rnn, lstm, gru) at the settings chosen on val")
    render: bool = option(False, "redraw the section from run_root, no training")
    run_root: str = option("runs/results", "where the runs go")
    out: str = option("docs/results.md", "the markdown file written")
    section: str = option(SECTION, "the marked section of out written (render reads it from the runs)")
    title: str = option(TITLE, "that section's heading, after the data's name")



def _seeds(value) -> list[dict]:
    """A model's runs: a list of per-seed results, or one results dict (one seed)."""
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _column_name(c: str) -> str:
    return "CIDEr (split df)" if c == "CIDEr_official" else c.replace("acc_", "")


def _mean_sd_cell(values: list[float]) -> str:
    from captioning.evaluation.stats import mean_sd

    if not values:
        return "-"
    mean, sd = mean_sd(values)
    return f"{mean:.3f}" if len(values) == 1 else f"{mean:.3f} ± {sd:.3f}"


def results_table(runs: dict, human: dict[str, dict] | None = None,
                  extra: list[tuple[str, str, dict]] | None = None) -> str:
    """Markdown table: one row per (model, split) and per (baseline, split); baselines listed once.

    ``runs[model]`` is one run's results ({split: metrics, "<baseline>/<split>": metrics}) or a list of
    them, one per seed: each cell is then mean ± sd over the seeds (sample sd); baselines, which do not
    depend on the seed, come from the first. ``human`` maps a split to the references' own leave-one-out
    scores (``metrics.human_agreement``); ``extra`` adds rows (name, split, metrics) after the
    baselines, e.g. the chance and ceiling lines.
    """
    header = "| model | split | " + " | ".join(_column_name(c) for c in COLUMNS) + " |"
    lines = [header, "|" + "---|" * (len(COLUMNS) + 2)]
    seeds = {name: _seeds(v) for name, v in runs.items()}
    first = next(iter(seeds.values()))[0]
    splits = [k for k in first if not k.startswith("_") and "/" not in k]
    rows = [(name, s, [m[s] for m in ms]) for s in splits for name, ms in seeds.items()]
    rows += [(k.split("/")[0].replace("_", "-"), s, [first[k]]) for s in splits for k in first if k.endswith(f"/{s}")]
    rows += [(name, s, [m]) for name, s, m in extra or [] if s in splits]
    rows += [("human (leave-one-out)", s, [human[s]]) for s in splits if human and s in human]
    for name, split, per_seed in rows:
        vals = " | ".join(_mean_sd_cell([m[c] for m in per_seed if c in m]) for c in COLUMNS)
        lines.append(f"| {name} | {split} | {vals} |")
    return "\n".join(lines)


MEASURES = ("CHAIR_i", "CHAIR_s", "distinct_1", "distinct_2", "vocab_used", "copied_from_train", "pair_recall@5")


def measures_table(runs: dict) -> str:
    """Markdown table of hallucination and diversity (captioning/evaluation/measures.py): one row per (model,
    split) with mean ± sd over seeds of each measure the runs have ('-' where a split has none, e.g.
    pair_recall@5 outside the novel splits); empty when no run has any."""
    seeds = {name: _seeds(v) for name, v in runs.items()}
    first = next(iter(seeds.values()))[0]
    splits = [k for k in first if not k.startswith("_") and "/" not in k]
    shown = [c for c in MEASURES if any(c in m.get(s, {}) for ms in seeds.values() for m in ms for s in splits)]
    if not shown:
        return ""
    lines = ["| model | split | " + " | ".join(shown) + " |", "|" + "---|" * (len(shown) + 2)]
    for s in splits:
        for name, ms in seeds.items():
            lines.append(f"| {name} | {s} | " + " | ".join(_mean_sd_cell([m[s][c] for m in ms if c in m.get(s, {})])
                                                          for c in shown) + " |")
    return "\n".join(lines)


def headline_table(intervals: dict[str, dict[str, dict[str, tuple[list[float], object]]]]) -> str:
    """Markdown: per model and split, each headline metric as mean ± sd over seeds and the 95% bootstrap
    interval over images of that mean. ``intervals[model][split][metric] = (per-seed values, Interval)``."""
    lines = ["| model | split | " + " | ".join(_column_name(c) for c in HEADLINE) + " |", "|" + "---|" * (len(HEADLINE) + 2)]
    for model, splits in intervals.items():
        for split, metrics in splits.items():
            cells = []
            for c in HEADLINE:
                if c not in metrics:
                    cells.append("-")
                    continue
                values, ci = metrics[c]
                cells.append(f"{_mean_sd_cell(values)} [{ci.low:.3f}, {ci.high:.3f}]")
            lines.append(f"| {model} | {split} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cost_table(dirs: dict[str, list[Path]], seconds: dict[str, list[float]]) -> str:
    """Markdown: per model, its trainable parameters and the seconds per cross-entropy and per self-critical
    epoch (median over a run's epochs, val decoding included; mean ± sd over seeds) and minutes per run."""
    from captioning.evaluation.cost import parameter_count, run_epoch_seconds
    from captioning.evaluation.stats import mean_sd

    def cell(values: list[float]) -> str:
        if not values:
            return "-"
        mean, sd = mean_sd(values)
        return f"{mean:.1f}" if len(values) == 1 else f"{mean:.1f} ± {sd:.1f}"

    lines = ["| model | parameters | s / cross-entropy epoch | s / self-critical epoch | min / run |", "|---|---|---|---|---|"]
    for model, ds in dirs.items():
        stages = [cell([s for s in (run_epoch_seconds(d, stage) for d in ds) if s is not None])
                  for stage in ("cross_entropy", "self_critical")]
        minutes = cell([s / 60 for s in seconds.get(model, []) if s])
        params = f"{parameter_count(ds[0]):,}" if (ds[0] / "checkpoints" / "best.pt").is_file() else "-"
        lines.append(f"| {model} | {params} | {stages[0]} | {stages[1]} | {minutes} |")
    return "\n".join(lines)


def chance_and_ceiling(train: list, data: dict[str, list]) -> list[tuple[str, str, dict]]:
    """The scene accuracies' bounds per split, as results-table rows: ``chance`` (a blind guesser that
    draws each value from the training frequencies: scene_metrics.chance_accuracy) and ``ceiling`` (one
    reference per image, the first, scored as the hypothesis by the same judge as the models)."""
    from captioning.data.scene_metrics import chance_accuracy
    from captioning.data.scenes import attribute_accuracy

    rows = []
    for split, recs in data.items():
        rows.append(("chance (training frequencies)", split,
                     {f"acc_{k}": v for k, v in chance_accuracy(train, recs).items()}))
    for split, recs in data.items():
        acc = attribute_accuracy(recs, {r.image_id: r.captions[0] for r in recs if r.captions})
        rows.append(("ceiling (a reference as the caption)", split, {f"acc_{k}": v for k, v in acc.items()}))
    return rows


ATTRIBUTES = ("count", "colour", "shape", "size", "position", "relation")


NOVELTY_GROUPS = ("objects=1", "objects=2", "objects=3", "seen_in_train", "unseen_in_train")


def novelty_table(groups: dict[str, dict[str, dict[str, dict[str, float]]]]) -> str:
    """Markdown: per model and split, scene / binding in scenes of 1, 2, 3 objects and in scenes whose
    description does / does not occur in train. ``groups[model][split]`` is ``split_breakdown``'s output
    (averaged over seeds); the images of each group head the column."""
    first = next(iter(groups.values()))
    header = ["| model | split | " + " | ".join(NOVELTY_GROUPS) + " |", "|---|---|" + "---:|" * len(NOVELTY_GROUPS)]
    lines = []
    for split in first:
        sizes = [f"{int(first[split][g]['images'])} images" if g in first[split] else "-" for g in NOVELTY_GROUPS]
        lines.append(f"| (size) | {split} | " + " | ".join(sizes) + " |")
    for model, splits in groups.items():
        for split, by_group in splits.items():
            cells = [f"{by_group[g]['scene']:.3f} / {by_group[g]['binding']:.3f}" if g in by_group else "-"
                     for g in NOVELTY_GROUPS]
            lines.append(f"| {model} | {split} | " + " | ".join(cells) + " |")
    return "\n".join(header + lines)


def pair_table(pairs: dict[str, dict[str, dict[str, list[float]]]]) -> str:
    """Markdown: per model and split, the share of unseen-pair objects in each ``PAIR_OUTCOMES`` (mean ± sd over
    seeds). ``pairs[model][split][outcome]`` = per-seed values, and ``objects`` the number of such objects."""
    from captioning.data.scene_metrics import PAIR_OUTCOMES

    lines = ["| model | split | objects | " + " | ".join(o.replace("_", " ") for o in PAIR_OUTCOMES) + " |",
             "|" + "---|" * (len(PAIR_OUTCOMES) + 3)]
    for model, splits in pairs.items():
        for split, values in splits.items():
            cells = " | ".join(_mean_sd_cell(values[o]) for o in PAIR_OUTCOMES)
            lines.append(f"| {model} | {split} | {values['objects'][0]:.0f} | {cells} |")
    return "\n".join(lines)


def group_table(groups: dict[str, dict[str, dict[str, dict[str, float]]]]) -> str:
    """Markdown: per model, split and group of ``scene_metrics.scene_groups`` that the by-count table does not
    show (a drawing style, twins, a held-out pair, 4 or more objects), the group's images and its scene and
    binding accuracy (mean over seeds). ``groups[model][split]`` is ``group_breakdown``'s output."""
    lines = ["| model | split | group | images | scene | binding |", "|---|---|---|---:|---:|---:|"]
    for model, splits in groups.items():
        for split, by_group in splits.items():
            for name, acc in by_group.items():
                if name.startswith("objects=") and int(name.split("=")[1]) <= 3:
                    continue
                lines.append(f"| {model} | {split} | {name} | {acc['images']:.0f} | {acc['scene']:.3f} | "
                             f"{acc['binding']:.3f} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def place_table(places: dict[str, dict[str, dict[str, dict[str, float]]]]) -> str:
    """Markdown: per model and split of scenes with more than 3 objects, the share of objects named with their
    colour, shape and size together (``bound``) at each place along the row or column (mean over seeds), so
    that captions which stop early show as a drop at the last places. ``places[model][split]`` is
    ``object_breakdown``'s output."""
    shown = {(m, s): kinds for m, splits in places.items() for s, kinds in splits.items() if "place=4" in kinds}
    if not shown:
        return ""
    n = max(int(k.split("=")[1]) for kinds in shown.values() for k in kinds if k.startswith("place="))
    lines = ["| model | split | " + " | ".join(f"place {i}" for i in range(1, n + 1)) + " |",
             "|---|---|" + "---:|" * n]
    for (model, split), kinds in shown.items():
        cells = [f"{kinds[f'place={i}']['bound']:.3f}" if f"place={i}" in kinds else "-" for i in range(1, n + 1)]
        lines.append(f"| {model} | {split} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def by_count_table(runs: dict[str, dict[str, dict[str, float]]]) -> str:
    """Markdown: per model and split, each attribute's accuracy in scenes of 1, 2 and 3 objects.

    ``runs[model][split]`` is ``scenes.attribute_accuracy(..., per_count=True)`` (keys like ``colour@2``).
    """
    counts = sorted({int(k.split("@")[1]) for m in runs.values() for acc in m.values() for k in acc if "@" in k})
    lines = ["| model | split | objects | " + " | ".join(ATTRIBUTES) + " |", "|" + "---|" * (len(ATTRIBUTES) + 3)]
    for model, splits in runs.items():
        for split, acc in splits.items():
            for n in counts:
                if not any(f"{a}@{n}" in acc for a in ATTRIBUTES):  # no scene of n objects in this split
                    continue
                vals = " | ".join(f"{acc[f'{a}@{n}']:.3f}" if f"{a}@{n}" in acc else "-" for a in ATTRIBUTES)
                lines.append(f"| {model} | {split} | {n} | {vals} |")
    return "\n".join(lines)


SEALED_SPLITS = ["data.eval_splits=[test,test_novel]"]  # what make_results scores on the shapes data
# the default rows: one per cell, each at the settings the val search chose for it (configs/experiment/shapes_*.yaml;
# the LSTM's are the defaults)
CELL_ROWS = {"rnn": ["experiment=shapes_rnn"], "lstm": ["cell=lstm"], "gru": ["experiment=shapes_gru"]}


def make_results(overrides: list[str], cells=("rnn", "lstm", "gru"), out: str = "docs/results.md",
                 run_root: str = "runs/results", seeds: int = 3, rows: dict[str, list[str]] | None = None,
                 jobs: int = 1, section: str = SECTION, title: str = TITLE) -> dict:
    """Train and evaluate each row at seeds 0..seeds-1 (``<run_root>/<row>/seed<k>``), save
    ``summary.json``, then write the results section ``section`` of ``out`` under the heading ``title``.

    ``rows`` maps a row's label to its own overrides (after ``overrides``, which every run gets), e.g.
    ``{"transformer": ["experiment=transformer"]}``; by default one row per cell of ``cells``. A run whose
    directory already holds the metrics of the same overrides and seed is read, not trained again, so an
    interrupted make_results continues where it stopped. ``jobs`` > 1 trains that many runs at once, each
    in its own process with cpu_count / jobs threads unless ``num_threads`` is among the overrides."""
    if not section or not section.replace("_", "").isalnum():
        raise ConfigError(f"section names a marked section of {out}: letters, digits and _ only, got {section!r}")
    rows = dict(rows) if rows else {cell: CELL_ROWS.get(cell, [f"cell={cell}"]) for cell in cells}
    overrides = sealed_splits(overrides)
    runs, seconds = train_rows(overrides, rows, seeds, jobs, run_root)
    meta = {"overrides": list(overrides), "rows": rows, "seeds": list(range(seeds)), "seconds": seconds,
            "jobs": jobs, "machine": machine_line(), "commit": git_commit(), "section": section, "title": title}
    save_json({**runs, "_meta": meta}, Path(run_root) / "summary.json")  # atomic, like every output
    write_results(run_root, out)
    return runs


def train_rows(overrides: list[str], rows: dict[str, list[str]], seeds: int, jobs: int,
               run_root: str) -> tuple[dict[str, dict[str, dict]], dict[str, list[float]]]:
    """Train each row at seeds 0..seeds-1 into ``<run_root>/<row>/seed<k>`` (finished runs are read, not trained
    again) and return each row's metrics per seed and its run times. The runs of make_results and of the val
    search (captioning/experiments/search.py)."""
    from captioning.features.prepare import prepare
    from captioning.pipeline import resolve_device, run_options

    if seeds < 1:
        raise ConfigError(f"seeds must be at least 1, got {seeds}")
    if jobs < 1:
        raise ConfigError(f"jobs must be at least 1, got {jobs}")
    if any(o.split("=", 1)[0].lstrip("+~") == "seed" for row in [overrides, *rows.values()] for o in row):
        raise ConfigError("make_results and the search set the seed of each run themselves: use seeds=N, not seed=...")
    bad = [label for label in rows if not label or "/" in label or label.startswith(("_", "."))]
    if bad:
        raise ConfigError(f"row labels name folders under {run_root}: {bad} cannot; use plain names like lstm")
    threads = [] if jobs == 1 or any(o.startswith("num_threads=") for o in overrides) else \
        [f"num_threads={max(1, (os.cpu_count() or 1) // jobs)}"]
    tasks = [(label, seed, [*overrides, *row, f"seed={seed}"], Path(run_root) / label / f"seed{seed}")
             for label, row in rows.items() for seed in range(seeds)]
    # seed by seed (every row's seed 0 first), so an interrupted call leaves whole seeds of every row
    todo = [(keys, target) for _, seed, keys, target in sorted(tasks, key=lambda task: task[1])
            if finished_run(target, keys) is None]
    if jobs == 1:
        for keys, target in todo:
            train_one(keys, target)
    else:  # data and features first, once per (data, encoder), so the parallel runs only read the cache
        prepared = set()
        for keys, _ in todo:
            cfg = compose_run(keys)
            what = json.dumps([plain(cfg.data), plain(cfg.encoder)], sort_keys=True, default=str)
            if what not in prepared:
                source = replace(run_options(cfg).source, device=resolve_device(cfg.device))
                splits = [cfg.data.train_split, cfg.data.val_split, *cfg.data.eval_splits]
                prepare(source, splits_needed=list(dict.fromkeys(s for s in splits if s)))
                prepared.add(what)
        with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(train_in_worker, [*keys, *threads], target, os.getpid()) for keys, target in todo]
            try:
                for done in futures:
                    done.result()  # a failed run stops make_results with its error; finished runs stay reusable
            except BaseException:  # a failed run, Ctrl-C, a stopped run: start no queued run, wait for the others
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    runs = {label: {} for label in rows}
    seconds = {label: [] for label in rows}
    for label, seed, keys, target in tasks:
        results = finished_run(target, keys)
        runs[label][str(seed)] = results
        seconds[label].append(results.get("_run", {}).get("seconds_total", 0.0))
    return runs, seconds


def sealed_splits(overrides: list[str]) -> list[str]:
    """``overrides`` plus ``data.eval_splits=[test,test_novel]`` on the synthetic shapes data, whose main job
    evaluates val only (the test splits stay sealed for this script; docs/results.md, protocol), unless the
    overrides name the evaluated splits themselves."""
    if any(o.split("=", 1)[0].lstrip("+~") == "data.eval_splits" for o in overrides):
        return list(overrides)
    return [*SEALED_SPLITS, *overrides] if compose_run(list(overrides)).data.kind == "shapes" else list(overrides)


def train_one(keys: list[str], target: Path) -> dict:
    """One make_results run: the main job on ``keys`` in ``target``. It records the keys when it starts and, marked
    finished, when it ends (so a later make_results knows the run is finished and what it was); a run of the same
    keys that stopped (Ctrl-C, a kill, a node's time limit) continues from its last.pt (its minutes per run then
    count the last start only)."""
    from captioning.pipeline import run, run_options

    record, made = target / "make_results.json", run_keys(keys)
    started = json.loads(record.read_text()) if record.is_file() else {}
    again = started == {"overrides": made, "finished": False} and (target / "checkpoints" / "last.pt").is_file()
    resume = ["resume=auto"] if again and not any(k.split("=", 1)[0].lstrip("+~") == "resume" for k in keys) else []
    save_json({"overrides": made, "finished": False}, record)
    results = run(run_options(compose_run([*keys, *resume])), target)
    save_json({"overrides": made, "finished": True}, record)
    return results


def run_keys(keys: list[str]) -> list[str]:
    """A run's overrides as make_results records them: ``num_threads`` (how many ran at a time) aside."""
    return [k for k in keys if not k.startswith("num_threads=")]


class WorkerState:
    """What a pool worker of train_rows remembers between its runs: whether one of them stopped on a signal."""

    stopped = False


def train_in_worker(keys: list[str], target: Path, parent: int) -> dict:
    """train_one in a pool worker of train_rows. A worker whose run stopped on a signal (SIGINT, SIGTERM,
    SIGUSR1: that run saved and can resume), or whose parent (pid ``parent``) is gone, starts no further run:
    the runs still queued stay for the next call, which trains what is unfinished."""
    from captioning.utils.interrupts import Interrupted

    if WorkerState.stopped or os.getppid() != parent:
        reason = "a run of this worker was stopped" if WorkerState.stopped else "make_results or the search has exited"
        raise Interrupted(signal.SIGTERM, f"{target} not started: {reason}")
    try:
        return train_one(keys, target)
    except Interrupted:
        WorkerState.stopped = True
        raise


def finished_run(target: Path, keys: list[str]) -> dict | None:
    """The metrics of a finished run in ``target`` made with these overrides (``num_threads`` aside), else None."""
    made, metrics = target / "make_results.json", target / "metrics.json"
    if not (made.is_file() and metrics.is_file()):
        return None
    record = json.loads(made.read_text())  # records before "finished" was written are of finished runs
    if record.get("overrides") != run_keys(keys) or not record.get("finished", True):
        return None
    return json.loads(metrics.read_text())


def git_commit() -> str | None:
    """The commit of the code that made the runs (None outside a git checkout)."""
    try:
        out = subprocess.run(["git", "-C", str(Path(__file__).parent), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(Path(__file__).parent), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() + ("+changes" if dirty else "")) if out.returncode == 0 else None


def compose_run(overrides: list[str]):
    """The main job's config (captioning/configs/train.yaml) with ``overrides``."""
    import captioning.config  # noqa: F401  (registers the config schemas with Hydra)

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose("train", overrides=overrides)


def _saved_runs(summary: dict, run_root: Path) -> tuple[dict[str, list[dict]], dict[str, list[Path]]]:
    """Per model, its per-seed results and run directories, from summary.json as make_results writes it
    ({cell: {seed: results}}) or as it did before seeds ({cell: results}, the run in <run_root>/<cell>)."""
    results, dirs = {}, {}
    for cell, value in summary.items():
        if value and all(k.isdigit() for k in value):
            results[cell] = [value[k] for k in sorted(value, key=int)]
            dirs[cell] = [run_root / cell / f"seed{k}" for k in sorted(value, key=int)]
        else:
            results[cell], dirs[cell] = [value], [run_root / cell]
    return results, dirs


def load_summary(run_root: str) -> tuple[dict, dict[str, list[dict]], dict[str, list[Path]], dict[str, list[float]]]:
    """What make_results saved in ``<run_root>/summary.json``: its meta, each row's per-seed results, run
    directories and run times (seconds)."""
    path = Path(run_root) / "summary.json"
    if not path.is_file():
        raise FileNotFoundError(f"no saved runs to render: {path} is missing; run `captioning-make-results` "
                                "first (it trains each cell and writes it)")
    summary = json.loads(path.read_text())
    meta = summary.pop("_meta", {})
    runs, dirs = _saved_runs(summary, Path(run_root))
    seconds = meta.get("seconds") or {c: [m.get("_run", {}).get("seconds_total", 0.0) for m in ms]
                                      for c, ms in runs.items()}
    seconds = {c: s if isinstance(s, list) else [s] for c, s in seconds.items()}
    return meta, runs, dirs, seconds


def seed_intervals(runs: dict[str, list[dict]], dirs: dict[str, list[Path]], eval_splits: list[str],
                   resamples: int) -> dict:
    """``headline_table``'s input: per row, split and headline metric, the per-seed values and the bootstrap
    interval over images of their mean (skipped where a seed lacks the metric or its per-image values)."""
    from captioning.experiments.compare import seed_interval

    intervals: dict = {}
    for cell, ds in dirs.items():
        intervals[cell] = {}
        for split in eval_splits:
            intervals[cell][split] = {}
            for metric in HEADLINE:
                values = [m[split][metric] for m in runs[cell] if metric in m.get(split, {})]
                if len(values) < len(ds):
                    continue
                try:
                    intervals[cell][split][metric] = (values, seed_interval(ds, split, metric, resamples))
                except (KeyError, FileNotFoundError):  # per-image values not saved (runs from before)
                    continue
    return intervals


@dataclass
class SceneBreakdowns:
    """Per row and split, from the saved captions of the synthetic scenes (``scene_breakdowns``)."""

    by_count: dict  # attribute accuracy by number of objects (mean over seeds)
    novelty: dict  # scene / binding by novelty group (split_breakdown; mean over seeds)
    pairs: dict  # the unseen pairs' outcomes, per seed
    groups: dict  # group_breakdown: by drawing style, twins, held-out pair, object count (mean over seeds)
    places: dict  # object_breakdown: per object kind and place in the row (mean over seeds)


def mean_over_seeds(parts: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """{group: {key: mean over the seeds' values}} of the groups every seed has."""
    common = [g for g in parts[0] if all(g in p for p in parts)]
    return {g: {k: sum(p[g][k] for p in parts) / len(parts) for k in parts[0][g]} for g in common}


def scene_breakdowns(dirs: dict[str, list[Path]], data: dict[str, list], train: list) -> SceneBreakdowns:
    """Per row and split, from the saved captions of the synthetic scenes: attribute accuracy by number of
    objects, the novelty groups and the groups and object places of ``scene_metrics`` (averaged over seeds),
    and the unseen pairs' outcomes per seed."""
    from captioning.data.scene_metrics import (group_breakdown, object_breakdown, scene_pairs, split_breakdown,
                                               unseen_pair_colours)
    from captioning.data.scenes import attribute_accuracy
    from captioning.evaluation.scoring import load_results

    seen = set().union(*(scene_pairs(r.scene) for r in train if r.scene is not None))
    out = SceneBreakdowns({}, {}, {}, {}, {})
    for cell, ds in dirs.items():
        for table in (out.by_count, out.novelty, out.pairs, out.groups, out.places):
            table[cell] = {}
        for s, recs in data.items():
            hyps = [load_results(d / "eval" / f"results_{s}.json") for d in ds]
            accs = [attribute_accuracy(recs, h, per_count=True) for h in hyps]
            out.by_count[cell][s] = {k: sum(a[k] for a in accs) / len(accs) for k in accs[0]}
            out.novelty[cell][s] = mean_over_seeds([split_breakdown(recs, h, train) for h in hyps])
            out.groups[cell][s] = mean_over_seeds([group_breakdown(recs, h, seen) for h in hyps])
            out.places[cell][s] = mean_over_seeds([object_breakdown(recs, h, seen) for h in hyps])
            named = [unseen_pair_colours(recs, h, train) for h in hyps]
            if named[0]["objects"]:
                out.pairs[cell][s] = {k: [n[k] for n in named] for k in named[0]}
    return out


def shifted_differences(dirs: dict[str, list[Path]], shifted_from: dict[str, str], eval_splits: list[str],
                        resamples: int) -> dict[str, dict[str, dict[str, object]]]:
    """Per row and shifted split (``data.generator.shifted_from``: {shifted split: the split whose scenes it
    redraws}, both evaluated), per headline metric, the paired bootstrap interval of shifted minus original:
    image i of one is image i of the other (the same scene and captions; the shifted split redraws the
    original's first images), resampled together with the seeds."""
    from captioning.evaluation.stats import paired_bootstrap
    from captioning.experiments.compare import seed_rows

    pairs = {s: o for s, o in (shifted_from or {}).items() if s in eval_splits and o in eval_splits}
    out: dict = {}
    for cell, ds in dirs.items():
        for shifted, original in pairs.items():
            for metric in HEADLINE:
                try:
                    rows_s, statistic, _ = seed_rows(ds, shifted, metric)
                    rows_o, _, _ = seed_rows(ds, original, metric)
                except (KeyError, FileNotFoundError):  # no per-image values of this metric
                    continue
                n = rows_s.shape[1]  # a shifted split redraws its source's first n scenes
                if n > rows_o.shape[1]:
                    raise ValueError(f"{shifted} has more images than {original}, whose scenes it redraws "
                                     f"({n} vs {rows_o.shape[1]})")
                interval = paired_bootstrap(rows_s, rows_o[:, :n], statistic, resamples=resamples)
                out.setdefault(cell, {}).setdefault(f"{shifted} - {original}", {})[metric] = interval
    return out


def shifted_table(differences: dict[str, dict[str, dict[str, object]]]) -> str:
    """Markdown: per row and shifted split, shifted minus original with its 95% paired interval per metric."""
    metrics = [m for m in HEADLINE if any(m in d for splits in differences.values() for d in splits.values())]
    lines = ["| model | splits | " + " | ".join(metrics) + " |", "|---|---|" + "---|" * len(metrics)]
    for cell, splits in differences.items():
        for name, by_metric in splits.items():
            cells = [f"{i.estimate:+.3f} [{i.low:+.3f}, {i.high:+.3f}]" if (i := by_metric.get(m)) else "-"
                     for m in metrics]
            lines.append(f"| {cell} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def results_command(meta: dict, n_seeds: int) -> str:
    """The captioning-make-results command line that made the saved runs (the sealed splits it adds itself left out)."""
    rows = meta.get("rows") or CELL_ROWS
    row_args = "" if rows == CELL_ROWS else "".join(f" row={label} {' '.join(keys)}".rstrip()
                                                    for label, keys in rows.items())
    jobs = f" jobs={meta['jobs']}" if meta.get("jobs", 1) > 1 else ""
    shown = "".join(f" {o}" for o in meta.get("overrides", []) if o not in SEALED_SPLITS)
    section, heading = meta.get("section", SECTION), meta.get("title", TITLE)
    named = f" section={section} title='{heading}'" if section != SECTION else ""
    return f"captioning-make-results seeds={n_seeds}{jobs}{named}{shown}{row_args}".strip()


@dataclass
class ResultsReport:
    """Everything the results section shows, gathered from the saved runs."""

    meta: dict
    runs: dict[str, list[dict]]
    dirs: dict[str, list[Path]]
    seconds: dict[str, list[float]]
    data_name: str
    decoding: str  # how the captions were decoded, in words
    intervals: dict
    human: dict[str, dict]
    bounds: list[tuple[str, str, dict]]
    scenes: SceneBreakdowns | None  # None: not synthetic scenes
    resamples: int
    shifted: dict = field(default_factory=dict)  # shifted_differences


def results_markdown(report: ResultsReport) -> str:
    """The results section's markdown: prose around the headline, cost, main, by-count, novelty and pair tables."""
    meta, n_seeds = report.meta, max(len(v) for v in report.runs.values())
    title = "Synthetic shapes" if report.data_name == "shapes" else f"Data `{report.data_name}`"
    times = ", ".join(f"{c} {sum(s) / len(s) / 60:.1f} min" for c, s in report.seconds.items() if s)
    spread = (f"mean ± sd over {n_seeds} seeds (0..{n_seeds - 1}; sample sd)" if n_seeds > 1
              else "one seed (0): no sd")
    body = (f"## {title}: {meta.get('title', TITLE)}\n\n"
            f"Machine: {meta.get('machine') or machine_line()}"
            + (f"; code at commit {meta['commit']}" if meta.get("commit") else "") + "\n\n"
            f"Command: `{results_command(meta, n_seeds)}` (run time per model and seed, evaluation included: {times}; "
            "the first run also extracts the features unless they are cached; the others read them from the cache)\n\n"
            f"Captions by {report.decoding}; every model cell is {spread}."
            + (" `test_novel` holds colour-shape pairs never seen in training." if "test_novel" in report.human else "")
            + "\n\n"
            "Headline metrics; in brackets the 95% bootstrap interval over images of the seed mean "
            f"(captioning/evaluation/stats.py, {report.resamples} draws; BLEU-4 is corpus BLEU recomputed on each "
            "draw). Whether one model beats another is not read off overlapping intervals: "
            "`captioning-paired a=runs/results/<A> b=runs/results/<B>` gives the paired interval.\n\n"
            + headline_table(report.intervals)
            + "\n\nWhat each model costs: trainable parameters, seconds per epoch of each training stage (median over "
            "the run's epochs, val decoding included; mean ± sd over seeds) and minutes per run, as measured by these "
            "runs on the machine above (two at a time when the command has jobs=2, one thread each):\n\n"
            + cost_table(report.dirs, report.seconds)
            + "\n\nEvery metric. CIDEr is CIDEr-D with the training references' document frequencies, one scale "
            "for every split; CIDEr (split df) is the official per-split CIDEr-D papers report. Attribute columns: "
            "the fraction of captions that get that attribute of the scene right (captioning/data/scenes.py; "
            "scene and binding are the binding-strict judgements). The chance row is a blind guesser that "
            "draws each value from the training frequencies (captioning/data/scene_metrics.py; its relation is "
            "the chance of naming the whole order, which a blind caption's lenient relation can exceed); the ceiling row "
            "scores one reference per image as the caption, with the same judge. The human row scores each "
            "reference against the others (leave-one-out BLEU): how far the phrasings themselves agree; models "
            "are scored against all of them.\n\n"
            + results_table(report.runs, report.human, report.bounds))
    if report.shifted:
        body += ("\n\nThe same scenes drawn otherwise: each shifted split minus the split whose scenes it redraws, "
                 "image for image, with the 95% paired bootstrap interval over images and seeds "
                 f"({report.resamples} draws):\n\n" + shifted_table(report.shifted))
    measures = measures_table(report.runs)
    if measures:
        body += ("\n\nHallucination and diversity (captioning/evaluation/measures.py): CHAIR_i = hallucinated "
                 "object mentions / mentions, CHAIR_s = captions with one / captions; distinct-n = distinct n-grams / "
                 "n-grams over the split's captions; vocab_used = words used; copied_from_train = captions word for "
                 "word a training caption; pair_recall@5 = images of the novel splits whose unseen colour-shape pair "
                 "one of the top 5 beams names:\n\n" + measures)
    scenes = report.scenes
    if scenes and scenes.by_count:
        body += ("\n\nBy number of objects in the scene (mean over seeds; `captioning-make-results "
                 "render=true` redraws this section from the saved runs):\n\n" + by_count_table(scenes.by_count)
                 + "\n\nScene / binding by number of objects and by whether the scene's description (its objects' "
                 "colour, shape and size and where they are) is that of some training scene, so that a caption "
                 "could be recalled rather than composed (captioning/data/scene_metrics.py, split_breakdown; mean "
                 "over seeds):\n\n" + novelty_table(scenes.novelty))
    groups = group_table(scenes.groups) if scenes else ""
    if groups:
        body += ("\n\nWhere the scene accuracy breaks, by the groups of the failure report "
                 "(captioning/data/scene_metrics.py, group_breakdown; mean over seeds): style = how the shifted "
                 "split drew the scene, twins = two objects of one colour and shape, held_out_pair = an object "
                 "whose colour-shape pair no training scene has, objects = scenes longer than training's:\n\n"
                 + groups)
    places = place_table(scenes.places) if scenes else ""
    if places:
        body += ("\n\nIn scenes of more than 3 objects, the share of objects named with their colour, shape and "
                 "size together at each place along the row or column (object_breakdown; mean over seeds): "
                 "captions that stop early lose the last places:\n\n" + places)
    if scenes and any(scenes.pairs.values()):
        body += ("\n\nWhat the captions call the objects whose colour-shape pair no training scene has "
                 "(captioning/data/scene_metrics.py, unseen_pair_colours; mean ± sd over seeds): composed = that "
                 "shape named in the object's own colour; recalled = named only in colours training pairs with that "
                 "shape; other = another colour or none; not described = that shape not named for it.\n\n"
                 + pair_table(scenes.pairs))
    return body


def write_results(run_root: str = "runs/results", out: str = "docs/results.md", resamples: int = 10_000) -> str:
    """Render the results section from the runs ``make_results`` saved (no training): the headline
    metrics with their intervals, the main table with the chance and ceiling lines and the references'
    leave-one-out agreement, and attribute accuracy by number of objects."""
    from captioning.data.datasets import load_dataset
    from captioning.evaluation.metrics import human_agreement

    meta, runs, dirs, seconds = load_summary(run_root)
    cfg = compose_run(meta.get("overrides", []))
    train_split, eval_splits = cfg.data.train_split, list(cfg.data.eval_splits)
    loaded = load_dataset(cfg.data, list(dict.fromkeys([train_split, *eval_splits])))
    data = {s: loaded[s] for s in eval_splits}
    synthetic = all(recs and recs[0].scene is not None for recs in loaded.values())
    decoding = cfg.decoding
    method = f"beam search (beam {decoding.beam_size})" if decoding.method == "beam" else f"{decoding.method} decoding"
    report = ResultsReport(
        meta=meta, runs=runs, dirs=dirs, seconds=seconds, data_name=cfg.data.name,
        decoding=method,
        intervals=seed_intervals(runs, dirs, eval_splits, resamples),
        human={s: human_agreement({r.image_id: r.captions for r in recs}) for s, recs in data.items()},
        bounds=chance_and_ceiling(loaded[train_split], data) if synthetic else [],
        scenes=scene_breakdowns(dirs, data, loaded[train_split]) if synthetic else None, resamples=resamples,
        shifted=shifted_differences(dirs, plain(getattr(cfg.data, "generator", {}) or {}).get("shifted_from") or {},
                                    eval_splits, resamples))
    body = results_markdown(report)
    update_section(out, meta.get("section", SECTION), body, title="Results")
    return body
