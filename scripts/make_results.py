"""Write docs/results.md: RNN vs LSTM vs GRU vs the baselines on the synthetic shapes test splits.

    python scripts/make_results.py [key=value ...]     # extra overrides go to every run

Trains one model per cell with the default config (features are extracted once and shared through
the cache), then tabulates BLEU-1..4, CIDEr and per-attribute accuracy for test and test_novel.
"""

import sys

from captioning.results import make_results

if __name__ == "__main__":
    make_results(sys.argv[1:])
