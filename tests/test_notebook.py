"""The demo notebook runs top to bottom (CPU, offline) on its fast path, and is stored without outputs."""

from pathlib import Path

import nbformat
import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "caption_demo.ipynb"


def test_notebook_is_stored_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


def test_notebook_executes_top_to_bottom(tiny_root, tmp_path, monkeypatch):
    """Run from a folder outside the project, as after a plain install: it writes only into its working
    folder there (the test run's tiny data aside, reused for speed) and finds the configs in the package."""
    from nbclient import NotebookClient

    # the kernel inherits this environment: a tiny model, the test run's tiny data
    monkeypatch.setenv("CAPTION_DEMO_FAST", "1")
    monkeypatch.setenv("CAPTIONING_DATA", str(tiny_root / "data"))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    for name in ("CAPTION_DEMO_CHECKPOINT", "CAPTION_DEMO_DIR", "CAPTION_DEMO_RUN_DIR", "CAPTIONING_CACHE"):
        monkeypatch.delenv(name, raising=False)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=240, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()  # raises on any error
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    text = "".join(o.get("text", "") for o in outputs)
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert "model show_tell LSTM" in text and "cosine similarity" in text and "next word is a colour" in text
    assert "no attention maps" in text
    assert "chelsea (a cat)" in text or "skipped chelsea" in text
    # training curve, 2 synthetic grids, photos, 2 failure sheets, the cell plot and the heatmap
    assert len(images) >= 8, len(images)
    work = tmp_path / "caption-demo"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["caption-demo"]
    run_dir = work / "runs" / "notebook" / "fast"
    assert (run_dir / "metrics.json").is_file() and (run_dir / "notebook" / "decoder.png").is_file()
    assert list((work / "cache" / "features").glob("shapes_tiny-*"))  # the feature cache in the working folder


def test_notebook_shows_an_attention_models_maps(tiny_root, tmp_path, monkeypatch):
    """With an attention model's run (CAPTION_DEMO_CHECKPOINT), section 5 steps aside and section 6 draws
    where the model looked."""
    from nbclient import NotebookClient

    from captioning.pipeline import run, run_options
    from tests.conftest import tiny_cfg

    run_dir = tmp_path / "sat"
    run(run_options(tiny_cfg(tiny_root, "model=show_attend_tell", "encoder.pool=regions", "encoder.grid_size=2",
                 "model.hidden_size=32", "model.embed_dim=16", "evaluate.baselines=[]")), run_dir)
    monkeypatch.setenv("CAPTION_DEMO_CHECKPOINT", str(run_dir))
    monkeypatch.setenv("CAPTIONING_DATA", str(tiny_root / "data"))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    monkeypatch.setenv("CAPTION_DEMO_DIR", str(tmp_path / "work"))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=240, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "model show_attend_tell LSTM" in text and "no single recurrent stack" in text
    assert (run_dir / "notebook" / "attention.png").is_file() and (tmp_path / "work").is_dir()
