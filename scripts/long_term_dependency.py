"""Reproduce the long-term-dependency table and gradient plot.

    python scripts/long_term_dependency.py                      # docs/long_term_dependency.md + figure
    python scripts/long_term_dependency.py lengths=[10,20] train.max_steps=200 docs_dir=null   # quick look

Options: captioning/configs/sequence/long_term_dependency.yaml (SweepConfig in captioning/sequence/experiments.py);
every bad value is named before the first run.
"""

from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from captioning.sequence.config import check, register_schemas
from captioning.sequence.experiments import SweepConfig
from captioning.sequence.experiments import length_sweep, write_report

ROOT = Path(__file__).resolve().parents[1]
register_schemas()  # captioning/configs/sequence/*.yaml extend the declared options: store them before Hydra composes


def _row(r: dict) -> None:
    print(f"  {r['variant']:>6} T={r['seq_len']:<4d} mse {r['mse']:.4f} ({r['mse_ratio']:.3f} x baseline), "
          f"accuracy {100 * r['accuracy']:.1f}%, {r['steps']} steps, {r['seconds']:.0f} s"
          + ("  solved" if r["solved"] else ""), flush=True)


@hydra.main(config_path="../captioning/configs/sequence", config_name="long_term_dependency", version_base="1.3")
def main(cfg: DictConfig) -> None:
    opts = check(SweepConfig, cfg)  # every bad value named before any work
    if opts.threads:
        torch.set_num_threads(opts.threads)
    hc = HydraConfig.get()
    # where the outputs go does not change them: leave out_dir out of the reproducing command
    command = " ".join(["python scripts/long_term_dependency.py", *(o for o in hc.overrides.task if not o.startswith("out_dir="))])
    result = length_sweep(opts, progress=_row)
    docs = None if opts.docs_dir is None else (ROOT / opts.docs_dir if not Path(opts.docs_dir).is_absolute() else Path(opts.docs_dir))
    for path in write_report(result, opts, hc.runtime.output_dir, docs, command):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
