"""Benchmarks that write docs/benchmarks.md: `python scripts/benchmark.py [--only cells] [--repeats N]`.

Run on a quiet machine: the figures are wall-clock times. Each section records the machine and the
command that produced it.
"""

import argparse
import sys

import torch

from captioning.bench.cells import cells_report
from captioning.report import machine_line, update_section

SECTIONS = {"cells": cells_report}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", nargs="*", choices=sorted(SECTIONS), default=sorted(SECTIONS))
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--out", default="docs/benchmarks.md")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    for name in args.only:
        machine = machine_line()
        body = SECTIONS[name](repeats=args.repeats)
        command = "python scripts/benchmark.py " + " ".join(sys.argv[1:])
        update_section(args.out, name, f"## {name}\n\nMachine: {machine}\n\nCommand: `{command.strip()}`\n\n{body}")
        print(body)


if __name__ == "__main__":
    main()
