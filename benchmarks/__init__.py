"""Benchmarks: functions that measure, all run by one driver, scripts/benchmark.py (never timed in tests).

``python scripts/benchmark.py [--quick] [--only SECTION ...]`` runs the suite that writes docs/benchmarks.md
(sections.py and the modules of its sections); ``python scripts/benchmark.py NAME [options]`` runs one of
BENCHMARKS, the module ``benchmarks/NAME.py`` (``--help`` after the name lists its options). This file
imports nothing: a benchmark may choose which checkout's ``captioning`` package it times (scst_step).
"""

PROG = "scripts/benchmark.py"
DRIVER = f"python {PROG}"  # how a command that a report quotes begins

BENCHMARKS = {  # name -> what it measures and where it writes; each is benchmarks/<name>.py with main(argv)
    "loop": "seconds per training epoch, this checkout against an earlier commit (docs/benchmarks.md: loop)",
    "sampling": "greedy and beam captions and self-critical steps, this checkout against an earlier commit "
                "(docs/benchmarks.md: sampling)",
    "scst_step": "milliseconds per self-critical step of a trained run, this checkout's package or another's "
                 "(prints)",
    "transformer_cache": "beam search with the Transformer's key/value cache against re-running the prefix "
                         "(prints)",
    "lm": "the character-level LSTM and Transformer at equal wall time (docs/benchmarks.md: char-lm)",
    "decoding": "each decoding option against plain beam search under trained models, on val (docs/options.md: "
                "decoding; docs/figures/decoding_tradeoff.png)",
    "precision": "bf16 against fp32 encoder features under trained models (docs/results.md: precision)",
}
