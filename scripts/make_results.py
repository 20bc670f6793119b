"""Write docs/results.md: RNN vs LSTM vs GRU vs the baselines on the synthetic shapes test splits.

    python scripts/make_results.py [key=value ...]     # extra overrides go to every run
    python scripts/make_results.py --render            # redraw the section from runs/results, no training

Trains one model per cell with the default config (features are extracted once and shared through
the cache), then tabulates BLEU-1..4, CIDEr and per-attribute accuracy for test and test_novel, overall
and by number of objects, beside the baselines and the references' own leave-one-out agreement.
"""

import sys

from captioning.results import make_results, write_results

if __name__ == "__main__":
    if sys.argv[1:] == ["--render"]:
        write_results()
    else:
        make_results(sys.argv[1:])
