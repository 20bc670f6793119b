"""Benchmark the character models on Tiny Shakespeare: the LSTM and the Transformer at equal wall time.

    python scripts/benchmark.py lm                          # LSTM and Transformer, 300 s of training each
    python scripts/benchmark.py lm --seconds 30 --report /tmp/lm.md   # a quick check, docs left alone
    python scripts/benchmark.py lm --runs cell=gru "cell=transformer schedule=transformer cell.n_layer=6"
    python scripts/benchmark.py lm threads=1                # Hydra overrides of captioning/configs/lm/lm.yaml for every run

Each run is a separate seeded run of captioning-train-lm's code on the same corpus and split, whose
learning-rate schedule decays over the same budget. The clock counts the training loop (steps and
periodic validation), not reading the corpus or the final validation. Every model is scored by the same
function (captioning/lm/evaluate.py) on the whole validation text (the last 10%): consecutive windows of
``schedule.eval_window`` (64) characters, each from an empty context, so no prediction sees more text than
a transformer of block size 64; the recurrent cells also report char-rnn's measure, the state carried
through the text. docs/benchmarks.md quotes nanoGPT's own figure beside the generated section.
Writes the `char-lm` section of --report (other sections are kept) and results.json under --out.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import platform
import shlex
import time
from pathlib import Path

# Must run before torch loads OpenMP (the driver, scripts/benchmark.py, imports torch only through this module).
# On a shared machine, OpenMP threads that spin-wait for a descheduled sibling made each training step 10-20x
# slower here; sleeping costs little when idle.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from benchmarks import DRIVER, PROG  # noqa: E402
from benchmarks.common import BENCHMARKS_MD, ROOT  # noqa: E402
from captioning import CONFIG_DIR  # noqa: E402
from captioning.lm.config import LMRunConfig, check, register_schemas  # noqa: E402
from captioning.lm.model import load_lm  # noqa: E402
from captioning.lm.run import train_from_config  # noqa: E402
from captioning.lm.transformer import TransformerConfig  # noqa: E402
from captioning.utils.io import save_json  # noqa: E402
from captioning.utils.report import update_section  # noqa: E402

register_schemas()  # captioning/configs/lm/*.yaml extend the declared options: store them before composing

RUNS = ["cell=lstm", "cell=transformer schedule=transformer"]  # one quoted set of overrides per model


def machine() -> dict:
    """What the numbers were measured on, including how busy the machine was."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()],
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default")}


def describe(cell: object, model: object) -> str:
    """The model in words: layers and widths."""
    if isinstance(cell, TransformerConfig):
        return (f"Transformer {cell.n_layer} layers x {cell.n_head} heads x {cell.n_embd}, block {cell.block_size}, "
                f"dropout {cell.dropout}")
    return (f"{cell.num_layers}-layer {cell.name.upper()} {cell.hidden_size}, embedding {model.embedding_dim}, "
            f"dropout {cell.dropout}")


def run(seconds: float, overrides: list[str], out: Path) -> dict:
    """Train the config of ``overrides`` for ``seconds``; return the figures."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR / "lm"), version_base=None):
        cfg = compose("lm", overrides=[f"schedule.max_seconds={seconds}", "schedule.max_steps=100000000",
                                       *overrides, "schedule.final_eval_chars=null"])  # the whole validation text
        cfg = OmegaConf.merge(cfg, {"out_dir": str(out / f"{cfg.cell.name}-{seconds:g}s")})  # a new node
    opts = check(LMRunConfig, cfg)  # every bad value named before any work
    load_before, cpu_before = os.getloadavg()[0], time.process_time()
    result = train_from_config(opts)
    load_after, cpu_seconds = os.getloadavg()[0], time.process_time() - cpu_before
    model, _ = load_lm(result.checkpoint)
    carried = result.val_loss_carried
    return {"model": describe(opts.cell, opts.model), "cell": opts.cell.name, "overrides": overrides,
            "seconds_budget": seconds, "val_loss_windowed": round(result.val_loss, 4),
            "eval_window": opts.schedule.eval_window,
            "val_loss_carried": None if carried is None else round(carried, 4),
            "parameters": sum(p.numel() for p in model.parameters()), "steps": result.steps,
            "seconds": round(result.seconds, 1), "train_chars_per_s": round(result.train_chars_per_s),
            "load_avg_1min_before_after": [round(load_before, 2), round(load_after, 2)],
            # CPU time we got over what the threads could have had: well below 1 on a busy machine
            "cpu_share": round(cpu_seconds / (result.seconds * (opts.threads or os.cpu_count())), 2),
            "precision": result.precision,  # "auto" resolved to what ran
            "batch": opts.schedule.batch_size, "optimizer": opts.schedule.optimizer, "lr": opts.schedule.lr,
            "threads": opts.threads}


def report(results: list[dict], info: dict, command: str, target: float | None) -> str:
    """The markdown section: one table row per model."""
    window = results[0]["eval_window"]
    rows = [f"| model | parameters | val loss, {window}-char windows | val loss, state carried | steps "
            "| train chars/s | batch, optimiser, peak lr | CPU share | load avg 1 min (before, after) |",
            "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        carried = "" if r["val_loss_carried"] is None else f"{r['val_loss_carried']:.4f}"
        rows.append(f"| {r['model']} ({r['precision']}) | {r['parameters']:,} | {r['val_loss_windowed']:.4f} "
                    f"| {carried} | {r['steps']} | {r['train_chars_per_s']} | {r['batch']}, {r['optimizer']}, "
                    f"{r['lr']:g} | {r['cpu_share']} | {r['load_avg_1min_before_after']} |")
    best = min(results, key=lambda r: r["val_loss_windowed"])
    verdict = ("" if target is None else
               f" Target: the better model at most {target} on the {window}-character measure: "
               f"{'met' if best['val_loss_windowed'] <= target else 'not met'}.")
    return "\n".join([
        "## Character-level language models at equal wall time (Tiny Shakespeare)", "",
        f"Measured {info['date']} on {info['cpu']} ({info['cores']} cores), Python {info['python']}, "
        f"torch {info['torch']}, {results[0]['threads']} threads (OMP_WAIT_POLICY={info['omp_wait_policy']}); "
        f"{results[0]['seconds_budget']:g} s of training per model, one after the other.", "",
        f"Validation: the whole of the last 10% of the text, in consecutive windows of {window} characters, each "
        "scored from an empty context (zero state for the recurrent cells), the same function for every model; "
        "the recurrent cells also carry their state through the text (char-rnn's measure, read as "
        "schedule.eval_batch_size streams).", "",
        *rows, "", f"Best on the {window}-character measure: {best['model']}, {best['val_loss_windowed']:.4f} "
        f"nats/char.{verdict}", "", f"Command: `{command}`", "",
        "CPU share is the CPU time the run got over what its threads could have used (1.0 on an idle "
        "machine); with a share well below 1 or a load average above the core count, other jobs shared "
        "the CPU and the figures are pessimistic."])


def main(argv: list[str]) -> None:
    """Train each model for --seconds, then write the `char-lm` section of --report and results.json."""
    parser = argparse.ArgumentParser(prog=f"{PROG} lm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=300, help="seconds of training per model")
    parser.add_argument("--runs", nargs="+", default=RUNS,
                        help="one quoted set of Hydra overrides per model (default: %(default)s)")
    parser.add_argument("--target", type=float, default=None,
                        help="judge the better model's windowed validation loss against this (the issue sets "
                        "1.47 nats/char for --seconds 300)")
    parser.add_argument("--report", type=Path, default=BENCHMARKS_MD,
                        help="markdown file; only this benchmark's marked section is replaced")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "benchmark_lm")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of captioning/configs/lm/lm.yaml, for every run")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    info = {**machine(), "date": datetime.date.today().isoformat()}
    results = [run(args.seconds, [*args.overrides, *shlex.split(r)], args.out) for r in args.runs]
    for r in results:
        print(r)
    command = f"{DRIVER} lm " + " ".join(shlex.quote(a) for a in argv)
    save_json({"machine": info, "results": results, "command": command.strip()}, args.out / "results.json")
    update_section(args.report, "char-lm", report(results, info, command.strip(), args.target))
    print(f"wrote {args.report} and {args.out / 'results.json'}")
