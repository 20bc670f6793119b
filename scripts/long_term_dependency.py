"""Reproduce the long-term-dependency table and gradient plot.

    python scripts/long_term_dependency.py                      # docs/long_term_dependency.md + figure
    python scripts/long_term_dependency.py lengths=[10,20] train.max_steps=200 docs_dir=null   # quick look

Options: configs/sequence/long_term_dependency.yaml.
"""

from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from captioning.sequence.experiments import length_sweep, write_report

ROOT = Path(__file__).resolve().parents[1]


def _row(r: dict) -> None:
    print(f"  {r['variant']:>6} T={r['seq_len']:<4d} mse {r['mse']:.4f} ({r['mse_ratio']:.3f} x baseline), "
          f"accuracy {100 * r['accuracy']:.1f}%, {r['steps']} steps, {r['seconds']:.0f} s"
          + ("  solved" if r["solved"] else ""), flush=True)


@hydra.main(config_path="../configs/sequence", config_name="long_term_dependency", version_base="1.3")
def main(cfg: DictConfig) -> None:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    hc = HydraConfig.get()
    plain = OmegaConf.to_container(cfg, resolve=True)
    # where the outputs go does not change them: leave out_dir out of the reproducing command
    command = " ".join(["python scripts/long_term_dependency.py", *(o for o in hc.overrides.task if not o.startswith("out_dir="))])
    result = length_sweep(plain, progress=_row)
    docs = None if cfg.docs_dir is None else (ROOT / cfg.docs_dir if not Path(cfg.docs_dir).is_absolute() else Path(cfg.docs_dir))
    for path in write_report(result, plain, hc.runtime.output_dir, docs, command):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
