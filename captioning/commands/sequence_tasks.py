"""Train one sequence task and compare it with its trivial baseline.

    captioning-sequence-tasks task=adding cell=lstm seq_len=100
    captioning-sequence-tasks task=reverse cell=gru
    captioning-sequence-tasks task=caption_colour cell=rnn
    captioning-sequence-tasks task=paraphrase cell=lstm train.beam_size=5

Tasks and options: captioning/configs/sequence/
(declared in captioning/sequence/config.py's schemas). Every bad value is named before any work. Writes
result.json and model.pt to the run directory.
"""

import sys
from typing import Any

from captioning import CONFIG_DIR
from captioning.commands.cli import hydra_command

CONFIG_PATH, CONFIG_NAME = str(CONFIG_DIR / "sequence"), "sequence"


def register() -> None:
    """captioning/configs/sequence/*.yaml extend the declared options: store them before Hydra composes."""
    from captioning.sequence.config import register_schemas

    register_schemas()


def metrics_line(metrics: dict) -> str:
    """``name value, ...`` of a metrics dict."""
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())


def sequence_task(cfg: Any) -> None:
    """Train the task's model and print it beside its baseline."""
    from hydra.core.hydra_config import HydraConfig

    from captioning.sequence.config import check
    from captioning.sequence.train import SequenceRunConfig
    from captioning.sequence.train import run_task

    opts = check(SequenceRunConfig, cfg)  # every bad value named before any work
    run_dir = HydraConfig.get().runtime.output_dir
    name = opts.task.name + (f" T={opts.task.seq_len}" if opts.task.name == "adding" else "")
    print(f"{name}, cell {opts.cell.name}: training (run dir {run_dir})")
    result = run_task(opts, run_dir, on_eval=lambda row: print(
        f"  step {row['step']:5d}  train loss {row['train_loss']:.4f}  test: "
        f"{metrics_line({k: v for k, v in row.items() if k not in ('step', 'train_loss', 'seconds')})}"))
    for ex in result["examples"] if "examples" in result else []:
        print(f"  {ex['source']!r} -> {ex['output']!r} (reference {ex['reference']!r})")
    print(f"{name}, cell {opts.cell.name}, {result['steps']} steps, {result['seconds']:.0f} s")
    print(f"  model:    {metrics_line(result['final'])}")
    print(f"  baseline: {metrics_line(result['baseline'])}")



main = hydra_command("captioning-sequence-tasks", CONFIG_PATH, CONFIG_NAME, register, sequence_task)

if __name__ == "__main__":
    sys.exit(main())
