"""Every benchmark, one driver (the code is in benchmarks/, beside the package):

    python scripts/benchmark.py [--quick] [--only SECTION ...] [options]   # the suite of docs/benchmarks.md
    python scripts/benchmark.py NAME [options]                             # one of the benchmarks below
    python scripts/benchmark.py NAME --help                                # its options
"""

import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/ sits beside the package, not in it

from benchmarks import BENCHMARKS  # noqa: E402 (imports nothing: a benchmark may choose its package first)


def main(argv: list[str] | None = None) -> None:
    """Run benchmark ``argv[0]`` with the rest of ``argv`` as its options, or the suite when no name is first."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in BENCHMARKS:
        importlib.import_module(f"benchmarks.{argv[0]}").main(argv[1:])
        return
    if argv and not argv[0].startswith("-"):
        sys.exit(f"scripts/benchmark.py: no benchmark {argv[0]!r}; the names are {', '.join(BENCHMARKS)}, or "
                 f"options of the suite (--only SECTION ...; see --help)")
    from benchmarks.sections import main as suite

    width = max(map(len, BENCHMARKS))
    epilog = "\n".join([__doc__.strip(), "", "benchmarks:",
                        *(f"  {name:<{width}}  {what}" for name, what in BENCHMARKS.items())])
    suite(argv, epilog=epilog)


if __name__ == "__main__":
    main()
