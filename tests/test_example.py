"""examples/own_model, run as its README says: a caption model of the user's own (merge_captioner.py, found
only on the example's own PYTHONPATH) is trained with `--config-dir`, evaluated, used to caption images,
and its export loads through `Captioner.from_pretrained`, with no edit to the package. Each command is a
real subprocess whose PYTHONPATH holds the example folder and this checkout, nothing else."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from captioning.captioner import Captioner
from captioning.models.checkpoint import CheckpointError
from captioning.nn.decoding import beam_search, greedy
from tests.conftest import TINY

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "own_model"
NOT_MODEL = [o for o in TINY if not o.startswith(("model.", "data.eval_splits"))]  # data, schedule, encoder
SCST = "schedule.stages.self_critical"
# a smaller model, one self-critical epoch after the smoke schedule's two cross-entropy ones, test split only
SMALL = ["model.hidden_size=32", "model.embed_dim=16", f"{SCST}.epochs=1", f"{SCST}.samples=2",
         f"{SCST}.baseline=greedy", "data.eval_splits=[test]"]


def start(tmp_path: Path, tiny_root: Path, name: str, *args: str, example: bool = True) -> subprocess.Popen:
    """``python *args`` started in ``tmp_path`` with PYTHONPATH = the example folder (if ``example``) + this
    checkout, and the tiny data of the test run; its output goes to ``tmp_path/<name>.out`` and ``.err``."""
    path = [str(EXAMPLE)] * example + [str(ROOT)]
    env = {"PYTHONPATH": os.pathsep.join(path), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path),
           "OMP_NUM_THREADS": "1", "CAPTIONING_DATA": str(tiny_root / "data")}
    with open(tmp_path / f"{name}.out", "w") as out, open(tmp_path / f"{name}.err", "w") as err:
        return subprocess.Popen([sys.executable, *args], cwd=tmp_path, env=env, stdout=out, stderr=err)


def finish(child: subprocess.Popen, tmp_path: Path, name: str, succeed: bool = True) -> tuple[str, str]:
    """(stdout, stderr) of command ``name`` once it has ended, which must have succeeded (or failed)."""
    code = child.wait(timeout=600)
    out, err = ((tmp_path / f"{name}.{s}").read_text() for s in ("out", "err"))
    assert (code == 0) == succeed, f"exit status {code}\n{out[-2000:]}\n{err[-4000:]}"
    return out, err


def test_the_example_model_is_trained_evaluated_and_captions_from_its_own_path(tiny_root, tmp_path):
    # the model lives only in the example folder: without it on PYTHONPATH nothing finds it
    _, err = finish(start(tmp_path, tiny_root, "hidden", "-c", "import merge_captioner", example=False),
                    tmp_path, "hidden", succeed=False)
    assert "No module named 'merge_captioner'" in err

    run_dir, cache = tmp_path / "run", f"cache_dir={tiny_root / 'cache'}"
    finish(start(tmp_path, tiny_root, "train", "-m", "captioning.commands.train", "--config-dir",
                 str(EXAMPLE / "configs"), "model=merge", *NOT_MODEL, *SMALL, cache, f"hydra.run.dir={run_dir}"),
           tmp_path, "train")
    trained = json.loads((run_dir / "metrics.json").read_text())
    history = json.loads((run_dir / "history.json").read_text())
    assert [e["stage"] for e in history["epochs"]] == ["cross_entropy", "cross_entropy", "self_critical"]
    config = json.loads((run_dir / "export" / "config.json").read_text())
    # the export names the user's class by import path, with the yaml's options and the command line's
    assert config["model"] == {"name": "merge_captioner.MergeCaptioner", "embed_dim": 16, "hidden_size": 32,
                               "merge": "concat", "dropout": 0.2, "feature_norm": True}

    # the trained run, read three ways at once (each is a fresh interpreter: at once, they cost one's wait)
    images = [str(p) for p in sorted((tiny_root / "data" / "shapes_tiny" / "images" / "test").glob("*.png"))[:3]]
    load = ("import sys\nfrom captioning.captioner import Captioner\n"
            f"captioner = Captioner.from_pretrained({str(run_dir / 'export')!r})\n"
            "for c in captioner.caption(sys.argv[1:], method='beam', beam_size=3):\n    print(c.text)\n")
    children = {"evaluate": start(tmp_path, tiny_root, "evaluate", "-m", "captioning.commands.evaluate",
                                  f"checkpoint={run_dir}", "split=test", "metrics=bleu", cache,
                                  f"hydra.run.dir={tmp_path / 'eval'}"),
                "caption": start(tmp_path, tiny_root, "caption", "-m", "captioning.commands.caption", *images,
                                 f"checkpoint={run_dir}", "decoding.method=beam", "decoding.beam_size=3"),
                "export": start(tmp_path, tiny_root, "export", "-c", load, *images)}
    out = {name: finish(child, tmp_path, name)[0] for name, child in children.items()}

    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert evaluated["test"]["Bleu_4"] == trained["test"]["Bleu_4"]  # same checkpoint, split and decoding
    lines = [line.split("\t") for line in out["caption"].splitlines()]
    assert [path for path, _ in lines] == images and all(text for _, text in lines)
    assert out["export"].splitlines() == [text for _, text in lines]  # the export captions as the run does
    # without the example's path (as in this process) the export names the module it cannot import
    assert importlib.util.find_spec("merge_captioner") is None
    with pytest.raises(CheckpointError, match="merge_captioner"):
        Captioner.from_pretrained(run_dir / "export")


def example_model(merge: str, monkeypatch):
    """A small MergeCaptioner loaded from the example's file (not importable from the test's own path)."""
    spec = importlib.util.spec_from_file_location("example_merge_captioner", EXAMPLE / "merge_captioner.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up while it runs
    spec.loader.exec_module(module)
    config = module.MergeConfig(embed_dim=8, hidden_size=12, merge=merge)
    return module.MergeCaptioner(config, feature_dim=10, vocab_size=9, max_len=6).eval()


def test_the_example_model_keeps_the_contract(monkeypatch):
    torch.manual_seed(0)
    for merge in ("concat", "add", "multiply"):
        model = example_model(merge, monkeypatch)
        features, tokens = torch.randn(4, 10), torch.randint(1, 9, (4, 5))
        # teacher forcing and step-by-step decoding give the same distributions
        taught = torch.log_softmax(model(features, tokens), -1)
        state, stepped = model.init_state(features), []
        for t in range(tokens.size(1)):
            logp, state = model.step(tokens[:, t], state)
            stepped.append(logp)
        torch.testing.assert_close(torch.stack(stepped, 1), taught)
        # beam search over a batch reorders the state through select_state: each image's beam as if alone
        batch = beam_search(model, features, beam_size=3)
        assert batch.tokens == [beam_search(model, features[i : i + 1], beam_size=3).tokens[0] for i in range(4)]
        assert beam_search(model, features, beam_size=1).tokens == greedy(model, features).tokens
        # region features [B, R, D] are read as their mean
        regions = torch.randn(2, 3, 10)
        torch.testing.assert_close(model(regions, tokens[:2]), model(regions.mean(1), tokens[:2]))
