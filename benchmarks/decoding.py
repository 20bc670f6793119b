"""Each decoding option against plain beam search under trained models, on a split chosen for choices (val by
default): `python scripts/benchmark.py decoding --runs LABEL=RUN [LABEL=RUN ...]`.

The runs given with one label are one model trained at several seeds (e.g. a captioning-search row's seed0..seed2). Each run's
best checkpoint decodes the split once per setting of SETTINGS (captioning-evaluate with those `decoding.*`
keys; sampling seeded with the run's seed), and the table gives, per model and setting, the mean ± sd over
seeds of BLEU-4, CIDEr, scene, the hallucination measures (CHAIR_i, CHAIR_s) and the diversity measures
(distinct-2, vocabulary used, captions copied from training), and each setting minus plain beam search with
the paired bootstrap interval over images (captioning/experiments/compare.py: the seeds of both sides
together). The figure draws distinct-2 against CIDEr and scene for the beam, diverse-beam and top-p settings.
Evaluations already in --out are read, not redone. Writes the `decoding` section of docs/options.md and
docs/figures/decoding_tradeoff.png; `--settings beam --section SECTION --report FILE` gives one row per model at the default
decoding (the hallucination and diversity table of docs/results.md). The `.../n=3` settings decode three captions
per image (`decoding.num_captions=3`): the first is scored as before, and the three give the per-image diversity
(div-1, div-2 as Shetty et al. 2017, the share of an image's captions that are distinct).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from benchmarks import DRIVER, PROG
from benchmarks.common import ROOT, code_line, evaluate_run
from captioning.experiments.compare import paired_comparison
from captioning.utils.report import machine_line, update_section

BAD_ENDINGS = "[a,an,the,of,and,with,in,on,to,at,for]"  # self-critical.pytorch's remove_bad_endings words, less
# the ones this vocabulary cannot have at the end anyway
SETTINGS = {  # label -> captioning-evaluate overrides; the first is the reference the others are paired with
    "beam": [],  # the default decoding: beam search, beam 3
    "greedy": ["decoding.method=greedy"],
    "block_ngram=3": ["decoding.block_ngram=3"],
    "bad_endings": [f"decoding.bad_endings={BAD_ENDINGS}"],
    "diverse_beam/0.5": ["decoding.method=diverse_beam", "decoding.diversity=0.5"],  # 3 groups of one beam
    "diverse_beam/1": ["decoding.method=diverse_beam", "decoding.diversity=1.0"],
    "diverse_beam/2": ["decoding.method=diverse_beam", "decoding.diversity=2.0"],
    "top_k=5": ["decoding.method=sample", "decoding.top_k=5"],
    "top_p=0.5": ["decoding.method=sample", "decoding.top_p=0.5"],
    "top_p=0.8": ["decoding.method=sample", "decoding.top_p=0.8"],
    "top_p=0.95": ["decoding.method=sample", "decoding.top_p=0.95"],
    # three captions per image, the first scored as above; the others give the per-image diversity (div-n)
    "beam/n=3": ["decoding.num_captions=3"],  # the 3 beams
    "diverse_beam/1/n=3": ["decoding.method=diverse_beam", "decoding.diversity=1.0", "decoding.num_captions=3"],
    "top_p=0.8/n=3": ["decoding.method=sample", "decoding.top_p=0.8", "decoding.num_captions=3"],  # 3 draws
}
FAMILIES = {"beam": ("beam", "greedy"), "diverse beam": ("diverse_beam/0.5", "diverse_beam/1", "diverse_beam/2"),
            "top-p": ("top_p=0.5", "top_p=0.8", "top_p=0.95")}
PAIRED = ("CIDEr", "acc_scene")  # per-image metrics given as a paired difference against the reference setting
SHOWN = {"Bleu_4": "BLEU-4", "CIDEr": "CIDEr", "acc_scene": "scene", "CHAIR_i": "CHAIR_i", "CHAIR_s": "CHAIR_s",
         "distinct_2": "distinct-2", "vocab_used": "vocab", "copied_from_train": "copied",
         "div_1": "div-1 (image)", "div_2": "div-2 (image)", "captions_unique": "unique (image)"}


def slug(label: str) -> str:
    """A folder name for a setting's label."""
    return "".join(c if c.isalnum() or c in "._=" else "_" for c in label)


def evaluations(runs: list[Path], setting: str, split: str, out: Path) -> list[Path]:
    """Each run's evaluation of ``split`` with ``setting``'s decoding (done once; read when present)."""
    dirs = []
    for run in runs:
        target = out / slug(setting) / run.name
        if not (target / "metrics.json").is_file():
            seed = json.loads((run / "metrics.json").read_text()).get("_run", {}).get("seed", 0)
            torch.manual_seed(int(seed or 0))  # the sampling settings draw from the global generator
            evaluate_run(run, [f"split={split}", "evaluate.baselines=[]", *SETTINGS[setting]], target)
        dirs.append(target)
    return dirs


def summary(dirs: list[Path], split: str) -> dict[str, tuple[float, float]]:
    """Mean and sd over seeds of each shown metric."""
    values = [json.loads((d / "metrics.json").read_text())[split] for d in dirs]
    return {m: (statistics.mean(v[m] for v in values), statistics.stdev(v[m] for v in values) if len(values) > 1
                else 0.0) for m in SHOWN if m in values[0]}


def cell(mean_sd: tuple[float, float], metric: str) -> str:
    """``mean ± sd`` in the metric's precision."""
    digits = 0 if metric == "vocab_used" else 3
    return f"{mean_sd[0]:.{digits}f} ± {mean_sd[1]:.{digits}f}"


def table(results: dict, paired: dict, reference: str) -> str:
    """The markdown table: one row per (model, setting); ``paired`` holds each setting minus ``reference``."""
    metrics = [m for m in SHOWN if any(m in s for r in results.values() for s in r.values())]
    head = ["model", "decoding", *(SHOWN[m] for m in metrics),
            *(f"{SHOWN[m]} - {reference} [95% paired]" for m in PAIRED if paired)]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for model, by_setting in results.items():
        for setting, s in by_setting.items():
            diffs = []
            for m in PAIRED if paired else ():
                d = paired.get((model, setting, m))
                diffs.append("-" if d is None else f"{d['difference']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]")
            rows.append("| " + " | ".join([model, setting, *(cell(s[m], m) if m in s else "-" for m in metrics),
                                           *diffs]) + " |")
    return "\n".join(rows)


def figure(results: dict, path: Path) -> None:
    """distinct-2 against CIDEr and scene: one colour per model, one line per family of settings."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=110)
    markers = {"beam": "o", "diverse beam": "s", "top-p": "^"}
    for k, (model, by_setting) in enumerate(results.items()):
        colour = f"C{k}"
        for family, settings in FAMILIES.items():
            points = [by_setting[s] for s in settings if s in by_setting]
            for ax, metric in zip(axes, ("CIDEr", "acc_scene")):
                ax.plot([p["distinct_2"][0] for p in points], [p[metric][0] for p in points], marker=markers[family],
                        color=colour, linestyle="-" if family != "beam" else ":",
                        label=f"{model}: {family}" if metric == "CIDEr" else None)
    for ax, metric in zip(axes, ("CIDEr", "scene accuracy")):
        ax.set_xlabel("distinct-2 (distinct bigrams / bigrams, all captions of the split)")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("Diversity against accuracy on val: beam (3) and greedy, diverse beam (3 groups of one; diversity "
                 "0.5, 1, 2), top-p sampling (0.5, 0.8, 0.95); mean over seeds", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp)
    tmp.replace(path)
    plt.close(fig)


def main(argv: list[str]) -> None:
    """Evaluate every run at every setting, print the table, write the section and the figure."""
    parser = argparse.ArgumentParser(prog=f"{PROG} decoding", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", required=True, help="LABEL=RUN, repeated: a label's runs are one model at several seeds")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS), metavar="SETTING",
                        help=f"the settings decoded (default: all of {list(SETTINGS)})")
    parser.add_argument("--split", default="val", help="the split decoded (default val; never a test split)")
    parser.add_argument("--out", default=".cache/bench/decoding", help="where the evaluations are written")
    parser.add_argument("--report", default=str(ROOT / "docs" / "options.md"))
    parser.add_argument("--section", default="decoding")
    parser.add_argument("--figure", default=str(ROOT / "docs" / "figures" / "decoding_tradeoff.png"))
    parser.add_argument("--no-write", action="store_true", help="print only; leave the docs alone")
    args = parser.parse_args(argv)
    if args.split.startswith("test"):
        parser.error(f"split={args.split}: the test splits are sealed; choose on val")
    start = f"{machine_line()}; {code_line()}"
    results: dict[str, dict] = {}
    paired: dict = {}
    grouped: dict[str, list[Path]] = {}  # a label's runs, one per seed, in the order given
    for spec in args.runs:
        label, _, run = spec.partition("=")
        if not label or not run:
            parser.error(f"--runs {spec}: expected LABEL=RUN")
        grouped.setdefault(label, []).append(Path(run))
    for label, run_paths in grouped.items():
        dirs = {s: evaluations(run_paths, s, args.split, Path(args.out) / label) for s in args.settings}
        results[label] = {s: summary(d, args.split) for s, d in dirs.items()}
        reference = args.settings[0]
        for s in args.settings[1:]:
            for row in paired_comparison(dirs[s], dirs[reference], [args.split], list(PAIRED)):
                paired[(label, s, row["metric"])] = row
    command = f"{DRIVER} decoding " + " ".join(argv)
    seeds = sorted({len(runs) for runs in grouped.values()})
    text = (f"Split `{args.split}`, each run's best checkpoint; mean ± sd over seeds ({'/'.join(map(str, seeds))} "
            f"runs per model); differences against `{args.settings[0]}` paired over images and seeds. {start}.\n"
            f"Command: `{command}`\n\n" + table(results, paired, args.settings[0]))
    print(text)
    if args.no_write:
        return
    update_section(Path(args.report), args.section, text, title="Decoding and training options on val")
    if all(s in args.settings for family in FAMILIES.values() for s in family):  # the figure needs every curve
        figure(results, Path(args.figure))
