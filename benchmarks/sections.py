"""The suite that writes docs/benchmarks.md, section by section: `python scripts/benchmark.py [--quick] [--only SECTION ...]`.

Sections: cells (decoder training GFLOP/s vs the GEMM rate), extraction (end to end vs bare encoder
forward), cached_features (training on cached features vs recomputing the CNN), beam (batched vs one image at
a time), step (where a training step of the main job goes: phases, profiler self time by kind, padding; random
vs length-bucketed batches), bleu (ours vs the official scorer), scaling (time and peak memory at growing
sizes; --scaling-sizes: 10k took 30 min on 2 busy cores, 50k is 5x that).
Run on a quiet machine: the figures are wall-clock times. Each section records the machine (with its
load average) and the exact command. --quick shrinks every size to check that the sections work.
On a GPU: scripts/benchmark_gpu.sh (--device cuda --precision bf16), written beside the CPU sections.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

import torch

from benchmarks import DRIVER, PROG
from benchmarks.beam import beam_report
from benchmarks.cached import cached_report
from benchmarks.cells import cells_report
from benchmarks.common import Options
from benchmarks.extraction import extraction_report
from benchmarks.scaling import scaling_report
from benchmarks.scorer import scorer_report
from benchmarks.step import step_report
from captioning.utils.memory import keep_freed_memory
from captioning.utils.report import machine_line, update_section

SECTIONS = {"cells": cells_report, "extraction": extraction_report, "cached_features": cached_report,
            "beam": beam_report, "bleu": scorer_report, "scaling": scaling_report, "step": step_report}
CPU_ONLY = {"bleu"}  # no tensor work: the same figure on any device


def parse_args(argv: list[str] | None = None, epilog: str | None = None) -> argparse.Namespace:
    """The suite's options (``epilog``: more help text, the driver's list of the other benchmarks)."""
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__, epilog=epilog,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", choices=list(SECTIONS), default=list(SECTIONS))
    parser.add_argument("--quick", action="store_true", help="small sizes: the sections run; figures not to quote")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--num_threads", "--threads", dest="num_threads", type=int, default=None,
                        help="torch CPU threads, as num_threads= of the configs (default: torch's; --threads: old spelling)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--precision", "--amp", dest="precision", default="fp32", choices=["fp32", "bf16", "none"],
                        help="training steps and encoder, as precision= of the configs: fp32 | bf16 (autocast) "
                             "(--amp: old spelling; none = fp32)")
    parser.add_argument("--workers", type=int, default=0,
                        help="data-loader workers decoding images (0: in-process threads, the encoder's default)")
    parser.add_argument("--scaling-sizes", type=int, nargs="+", default=[1000, 10000, 50000])
    parser.add_argument("--work-dir", type=Path, default=Path(".cache/bench"), help="synthetic images and caches")
    parser.add_argument("--out", default="docs/benchmarks.md")
    args = parser.parse_args(argv)
    args.amp = "bf16" if args.precision == "bf16" else "none"  # the sections' autocast switch
    return args


def main(argv: list[str] | None = None, epilog: str | None = None) -> None:
    """Run the chosen sections and write each into --out (the others are kept)."""
    args = parse_args(argv, epilog)
    if args.device == "cuda":
        if not torch.cuda.is_available():
            sys.exit("--device cuda: no CUDA GPU is visible here; run the CPU suite without --device")
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels once
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    keep_freed_memory()  # as every entry point of the package does (captioning/utils/memory.py)
    opts = Options(quick=args.quick, repeats=args.repeats, device=args.device, amp=args.amp, work_dir=args.work_dir,
                   scaling_sizes=args.scaling_sizes, workers=args.workers)
    command = f"{DRIVER} " + " ".join(sys.argv[1:] if argv is None else argv)
    failed = []
    for name in args.only:
        if args.device != "cpu" and name in CPU_ONLY:
            continue
        machine = machine_line()
        section = SECTIONS[name]
        try:
            body = section(opts, threads=args.num_threads) if name == "scaling" else section(opts)
        except Exception as err:  # one broken section must not cost the others (a GPU run is one shot)
            traceback.print_exc()
            failed.append(name)
            last = (str(err).strip().splitlines() or [""])[-1]
            body = f"**Failed**: `{type(err).__name__}: {last}`"
        key = name if args.device == "cpu" else f"{name}-{args.device}"
        if args.device == "cpu" and args.amp != "none":  # beside the fp32 CPU figures, not over them
            key = f"{key}-{args.amp}"
        quick = " (--quick: smoke-test sizes, not figures to quote)" if args.quick else ""
        head = f"## {key}{quick}\n\nMachine: {machine}\n\nCommand: `{command.strip()}`"
        update_section(args.out, key, f"{head}\n\n{body}")
        print(f"## {key}\n{body}\n", flush=True)
    if failed:
        sys.exit(f"sections failed: {', '.join(failed)} (their error is in {args.out})")

