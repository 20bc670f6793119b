#!/usr/bin/env bash
# The benchmark suite on one CUDA GPU: AMP (autocast bf16) for training and the encoder, cuDNN RNNs
# (the fused backend on CUDA), cuDNN autotuning, data-loader workers for image decoding. Sized to
# finish in one go in under 5 minutes on an H100-class GPU; writes the *-cuda sections of
# docs/benchmarks.md beside the CPU ones. The bleu section has no tensor work and is CPU-only.
#
#   scripts/benchmark_gpu.sh [more scripts/benchmark.py options, e.g. --only cells beam]
#
# Without a GPU it stops with a message (exit 2). BENCH_DEVICE=cpu runs the same plan on the CPU with
# --quick sizes into .cache/bench/benchmark_gpu_plan.md, to check the script itself.
set -euo pipefail
cd "$(dirname "$0")/.."

DEVICE="${BENCH_DEVICE:-cuda}"
if [ "$DEVICE" = cuda ]; then
  if ! python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "benchmark_gpu.sh: no CUDA GPU is visible (torch.cuda.is_available() is False)." >&2
    echo "Run the CPU suite with: python scripts/benchmark.py   (or BENCH_DEVICE=cpu $0 to check this plan)" >&2
    exit 2
  fi
  OUT="${BENCH_OUT:-docs/benchmarks.md}"
  SIZE_ARGS=(--scaling-sizes 1000 10000)
else
  OUT="${BENCH_OUT:-.cache/bench/benchmark_gpu_plan.md}"
  SIZE_ARGS=(--quick)
fi
# one core stays with the main process; PNG decoding is what feeds the GPU
WORKERS=$(python -c "import os; print(max(1, min(8, len(os.sched_getaffinity(0)) - 1)))")

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
time python scripts/benchmark.py --device "$DEVICE" --precision bf16 --workers "$WORKERS" "${SIZE_ARGS[@]}" \
  --only cells extraction cached_features beam step scaling --out "$OUT" "$@"
