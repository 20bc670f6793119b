"""The benchmarks (run by hand, not in the suite) build their data from the main job's config: the overrides
they use must still compose against today's typed configs, or every section fails when someone runs it."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_shapes_overrides_compose_to_a_train_only_set(tmp_path):
    sys.path.insert(0, str(ROOT))  # benchmarks/ sits beside the package, as scripts/benchmark.py imports it
    try:
        from benchmarks.common import compose, shapes_overrides
    finally:
        sys.path.remove(str(ROOT))
    cfg = compose(*shapes_overrides(tmp_path, 10))
    assert dict(cfg.data.generator.splits) == {"train": 10, "val": 0, "test": 0, "test_novel": 0, "val_novel": 0}
    assert cfg.data.val_split == "train" and list(cfg.data.eval_splits) == ["train"]
    assert "cross_entropy" in cfg.schedule.stages and "self_critical" in cfg.schedule.stages  # the step section reads both
