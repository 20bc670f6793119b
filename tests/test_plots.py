"""Training-curve and bar-chart PNGs."""

import json

import numpy as np
import pytest
from PIL import Image

from captioning.evaluation.plots import bar_chart_figure, bar_chart_png, load_history, training_curve_figure, training_curve_png

HISTORY = {"epochs": [{"epoch": 1, "train_loss": 3.0, "val_bleu4": 0.10, "seconds": 1.0},
                      {"epoch": 2, "train_loss": 2.0, "val_bleu4": 0.30, "seconds": 1.0},
                      {"epoch": 3, "train_loss": 1.5, "val_bleu4": 0.25, "seconds": 1.0}],
           "best_bleu4": 0.30, "best_epoch": 2}


def test_training_curve_plots_loss_and_val_bleu_per_epoch(tmp_path):
    fig = training_curve_figure(HISTORY)
    loss_ax, bleu_ax = fig.axes
    assert list(loss_ax.lines[0].get_ydata()) == [3.0, 2.0, 1.5]
    assert list(bleu_ax.lines[0].get_ydata()) == [0.10, 0.30, 0.25]
    assert bleu_ax.lines[1].get_xdata()[0] == 2  # the best checkpoint's epoch is marked
    (tmp_path / "history.json").write_text(json.dumps(HISTORY))
    path = training_curve_png(tmp_path, tmp_path / "curve.png")  # from a run directory
    with Image.open(path) as im:
        assert im.format == "PNG" and im.width > 500
    assert not list(tmp_path.glob("*.tmp*"))


@pytest.mark.parametrize("best_stage, best, marked", [("self_critical", 2, 5), ("cross_entropy", 2, 2)])
def test_a_two_stage_history_is_drawn_as_one_run(best_stage, best, marked):
    two = {"epochs": [{**e, "stage": "cross_entropy"} for e in HISTORY["epochs"]]
           + [{"stage": "self_critical", "epoch": 1, "train_loss": -0.1, "val_bleu4": 0.32, "seconds": 1.0,
               "train_reward": 0.4},
              {"stage": "self_critical", "epoch": 2, "train_loss": -0.1, "val_bleu4": 0.35, "seconds": 1.0,
               "train_reward": 0.5}],
           "best_epoch": best, "best_stage": best_stage}
    fig = training_curve_figure(two)
    loss_ax, bleu_ax, reward_ax = fig.axes
    assert list(loss_ax.lines[0].get_ydata()) == [3.0, 2.0, 1.5]  # cross-entropy only on the loss axis
    assert list(reward_ax.lines[0].get_xdata()) == [4, 5] and list(reward_ax.lines[0].get_ydata()) == [0.4, 0.5]
    assert list(bleu_ax.lines[1].get_xdata()) == [4, 5]  # self-critical epochs follow the cross-entropy ones
    assert bleu_ax.lines[2].get_xdata()[0] == marked


def test_load_history_names_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="history.json"):
        load_history(tmp_path)
    (tmp_path / "history.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a training history"):
        load_history(tmp_path)


def test_bar_chart_groups_runs_and_skips_missing_values(tmp_path):
    fig = bar_chart_figure(["cell=rnn", "cell=lstm"], {"test": [0.2, 0.4], "test_novel": [0.1, None]})
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert heights[:3] == [0.2, 0.4, 0.1] and np.isnan(heights[3])
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["cell=rnn", "cell=lstm"]
    assert bar_chart_png(["a"], {"m": [1.0]}, tmp_path / "b.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="nothing to plot"):
        bar_chart_figure([], {})
