"""One error boundary (captioning/commands/cli.py): every command meets each kind of bad input that applies to
it (a missing, truncated or untrusted checkpoint, a module that can't be imported, a bad config value,
missing or malformed data, annotation, results or metrics files, a bad image) and answers with one line on
stderr naming the problem, a non-zero exit and no traceback; a bug keeps its traceback. The commands run
in-process through the same ``main`` a console script calls (the boundary is inside it); two cases run as
real processes."""

from __future__ import annotations

import datetime
import importlib
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONSOLE = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]


@pytest.fixture(scope="module")
def bad(tmp_path_factory, tiny_checkpoint) -> dict[str, Path]:
    """The bad inputs, written once: each a file or folder a user could hand to a command."""
    import torch

    root = tmp_path_factory.mktemp("bad")
    files = {"missing": root / "no" / "such" / "run", "root": root}
    data = tiny_checkpoint.read_bytes()
    files["truncated"] = root / "truncated.pt"
    files["truncated"].write_bytes(data[: len(data) // 2])
    files["untrusted"] = root / "untrusted.pt"  # a pickle that would construct an object when loaded
    torch.save({"format_version": 2, "when": datetime.date(2026, 1, 1)}, files["untrusted"])
    ckpt = torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)
    ckpt["model"]["name"] = "no_such_package.models.MyModel"
    files["unimportable"] = root / "unimportable.pt"
    torch.save(ckpt, files["unimportable"])
    files["notjson"] = root / "broken.json"
    files["notjson"].write_text('[{"image_id": 1, "caption": "a red')  # cut off mid-file
    files["results"] = root / "results.json"
    files["results"].write_text(json.dumps([{"image_id": 1, "caption": "a red circle"}]))
    files["annotations"] = root / "captions.json"
    files["annotations"].write_text(json.dumps({"images": [{"id": 1, "file_name": "x.png"}],
                                                "annotations": [{"id": 1, "image_id": 1, "caption": "a red circle"}]}))
    files["image"] = root / "image.png"
    from PIL import Image

    Image.new("RGB", (40, 40), "red").save(files["image"])
    files["bad_image"] = root / "bad_image.png"
    files["bad_image"].write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)  # a PNG header and nothing else
    files["run"] = root / "run_bad_json"  # a run directory whose metrics.json is cut off
    (files["run"] / "eval").mkdir(parents=True)
    (files["run"] / "metrics.json").write_text('{"test": {"Bleu_4": 0.')
    files["per_image"] = root / "run_bad_per_image"  # its metrics are fine, its per-image scores cut off
    (files["per_image"] / "eval").mkdir(parents=True)
    (files["per_image"] / "metrics.json").write_text('{"test": {"Bleu_4": 0.5}}')
    (files["per_image"] / "eval" / "per_image_test.json").write_text('[{"image_id": 1, "Bleu_4"')
    files["sweep"] = root / "sweep"
    (files["sweep"] / "0_cell=rnn").mkdir(parents=True)
    (files["sweep"] / "0_cell=rnn" / "metrics.json").write_text("{not json")
    files["custom"] = root / "custom"  # a data folder whose annotation file is not json
    (files["custom"] / "images").mkdir(parents=True)
    (files["custom"] / "train.json").write_text("{not json")
    files["tiny"] = tiny_checkpoint
    return files


# (command, arguments with {placeholders} from ``bad``, words the one line must hold)
CASES = [
    # captioning-train: bad values, a truncated resume, missing or malformed data
    ("captioning-train", ["seed=-1"], ["seed must be >= 0"]),
    ("captioning-train", ["no_such_key=1"], ["no_such_key"]),
    ("captioning-train", ["seed=abc"], ["seed=abc", "Integer"]),
    ("captioning-train", ["cell=elman"], ["elman"]),
    ("captioning-train", ["resume={truncated}", "data=shapes_tiny", "data.root={root}/shapes"],
     ["{truncated}", "truncated"]),
    ("captioning-train", ["data=coco2014", "data.root={missing}"], ["{missing}", "not found"]),
    ("captioning-train", ["data=custom"], ["invalid config: data.root: no value given"]),
    ("captioning-train", ["data=custom", "data.root={custom}", "data.val_split=null", "data.eval_splits=[train]",
                          "data.splits.train={{annotations:train.json,images:images}}",
                          "~data.splits.val", "~data.splits.test"],
     ["{custom}/train.json", "not valid json"]),
    # captioning-evaluate: every kind of bad checkpoint, bad json files, a bad value
    ("captioning-evaluate", ["checkpoint={missing}"], ["{missing}", "does not exist"]),
    ("captioning-evaluate", ["checkpoint={truncated}"], ["{truncated}", "corrupted or truncated"]),
    ("captioning-evaluate", ["checkpoint={untrusted}"], ["{untrusted}", "other than tensors"]),
    ("captioning-evaluate", ["checkpoint={tiny}"], ["{tiny}", "no training config"]),
    ("captioning-evaluate", ["mode=score", "results={notjson}", "annotations={annotations}"],
     ["{notjson}", "not valid json"]),
    ("captioning-evaluate", ["mode=score", "results={results}", "annotations={notjson}"],
     ["{notjson}", "not valid json"]),
    ("captioning-evaluate", ["mode=score", "results={missing}", "annotations={annotations}"], ["{missing}"]),
    ("captioning-evaluate", ["checkpoint={tiny}", "decoding.beam_size=0"], ["decoding.beam_size must be >= 1"]),
    # captioning-caption: bad checkpoints, a bad image, a bad value, an old spelling
    ("captioning-caption", ["{image}", "checkpoint={missing}"], ["{missing}", "does not exist"]),
    ("captioning-caption", ["{image}", "checkpoint={truncated}"], ["{truncated}", "corrupted or truncated"]),
    ("captioning-caption", ["{image}", "checkpoint={untrusted}"], ["{untrusted}", "other than tensors"]),
    ("captioning-caption", ["{image}", "checkpoint={unimportable}"], ["no_such_package", "can't be imported"]),
    ("captioning-caption", ["{bad_image}", "checkpoint={tiny}"], ["{bad_image}"]),
    ("captioning-caption", ["{image}", "checkpoint={tiny}", "keep_beams=-1"], ["keep_beams must be >= 0"]),
    ("captioning-caption", ["{image}", "checkpoint={tiny}", "show_beams=2"], ["keep_beams="]),
    # captioning-extract and captioning-probe: the training config's checks and data
    ("captioning-extract", ["shard=5/2"], ["shard"]),
    ("captioning-extract", ["data=coco2014", "data.root={missing}"], ["{missing}", "not found"]),
    ("captioning-probe", ["probe.epochs=0"], ["probe.epochs must be >= 1"]),
    # captioning-prepare-data
    ("captioning-prepare-data", ["coco2099"], ["coco2099", "choose from"]),
    ("captioning-prepare-data", [], ["targets=... is required"]),
    # the character model and the sequence tasks
    ("captioning-train-lm", ["cell=elman"], ["elman"]),
    ("captioning-train-lm", ["schedule.max_steps=-5"], ["schedule.max_steps"]),
    ("captioning-sample-lm", ["checkpoint={missing}"], ["{missing}", "not found"]),
    ("captioning-sample-lm", ["checkpoint={truncated}"], ["{truncated}", "corrupted or truncated"]),
    ("captioning-visualize-cells", ["checkpoint={missing}"], ["{missing}", "not found"]),
    ("captioning-visualize-cells", ["checkpoint={truncated}"], ["{truncated}", "corrupted or truncated"]),
    ("captioning-sequence-tasks", ["task=no_such_task"], ["no_such_task"]),
    ("captioning-sequence-tasks", ["seed=-1"], ["seed"]),
    # the research tools
    ("captioning-make-results", ["seeds=0"], ["seeds must be >= 1"]),
    ("captioning-make-results", ["render=true", "run_root={missing}"], ["{missing}"]),
    ("captioning-make-results", ["--seeds", "2"], ["--seeds is now seeds="]),
    ("captioning-search", ["split=test", "run_root={missing}"], ["not 'test'"]),
    ("captioning-search", ["render=true", "run_root={missing}"], ["{missing}"]),
    ("captioning-compare-runs", ["{missing}"], ["{missing}", "does not exist"]),
    ("captioning-compare-runs", ["{sweep}"], ["{sweep}/0_cell=rnn/metrics.json", "not valid json"]),
    ("captioning-paired", ["a={missing}", "b={missing}"], ["{missing}"]),
    ("captioning-paired", ["a={run}", "b={run}"], ["{run}/metrics.json", "not valid json"]),
    ("captioning-paired", ["a={per_image}", "b={per_image}"], ["{per_image}/eval/per_image_test.json", "not valid json"]),
    ("captioning-paired", ["a={run}", "b={run}", "level=2"], ["level must be"]),
    ("captioning-model-table", ["runs.lstm={missing}"], ["{missing}/metrics.json", "not found"]),
    ("captioning-model-table", ["runs.lstm={run}"], ["{run}/metrics.json", "not valid json"]),
    ("captioning-model-table", [], ["runs=... is required"]),
    ("captioning-export", ["{missing}"], ["{missing}", "does not exist"]),
    ("captioning-export", ["{truncated}", "out={root}/export"], ["{truncated}", "corrupted or truncated"]),
    ("captioning-export", ["{tiny}"], ["give out="]),
    ("captioning-render-examples", ["checkpoint={missing}"], ["{missing}", "does not exist"]),
    ("captioning-render-examples", ["checkpoint={tiny}"], ["no training config"]),
    ("captioning-render-attention", ["checkpoint={missing}"], ["{missing}", "does not exist"]),
    ("captioning-render-attention", ["checkpoint={truncated}"], ["{truncated}", "corrupted or truncated"]),
    ("captioning-render-attention", ["checkpoint={unimportable}"], ["no_such_package", "can't be imported"]),
    ("captioning-render-attention", ["--checkpoint", "{tiny}"], ["--checkpoint is now checkpoint="]),
]


def fill(words: list[str], bad: dict[str, Path]) -> list[str]:
    """``words`` with their {placeholders} replaced by the paths in ``bad``."""
    return [w.format(**{k: str(v) for k, v in bad.items()}) for w in words]


def run_command(name: str, args: list[str]) -> int:
    """The console command ``name`` with ``args``, in this process: its exit status."""
    return importlib.import_module(CONSOLE[name].split(":")[0]).main(args)


def test_every_command_meets_a_bad_input():
    assert {name for name, _, _ in CASES} == set(CONSOLE)


@pytest.mark.parametrize("name, args, words", CASES, ids=[f"{c[0]}-{' '.join(c[1])}" for c in CASES])
def test_a_users_mistake_is_one_line_and_a_nonzero_exit(name, args, words, bad, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # what a Hydra run writes lands here
    monkeypatch.setenv("CAPTIONING_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    status = run_command(name, fill(args, bad))
    err = capsys.readouterr().err
    assert status != 0 and "Traceback" not in err, err
    last = [line for line in err.splitlines() if line.strip()][-1]
    assert last.startswith("error: "), err
    for word in fill(words, bad):
        assert word in last, f"{word!r} not in {last!r}"


def test_a_bug_keeps_its_traceback(bad, tmp_path, monkeypatch):
    from captioning.commands import export

    def broken(cfg):
        raise ZeroDivisionError("a bug")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(export.main, "task", broken)
    with pytest.raises(ZeroDivisionError):
        export.main([str(bad["tiny"])])
    for kind in (KeyError("x"), ValueError("not a user's mistake")):  # a plain ValueError is a bug too
        monkeypatch.setattr(export.main, "task", lambda cfg, kind=kind: (_ for _ in ()).throw(kind))
        with pytest.raises(type(kind)):
            export.main([str(bad["tiny"])])


def process(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """A real process, as a user starts one (only PYTHONPATH points at this checkout)."""
    environ = {"PYTHONPATH": str(ROOT), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "OMP_NUM_THREADS": "1",
               "HOME": str(cwd), **env}
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, env=environ,
                          timeout=300)


def test_as_a_process_a_mistake_is_one_line_and_a_bug_a_traceback(bad, tmp_path):
    done = process(["-m", "captioning.commands.evaluate", f"checkpoint={bad['missing']}"], tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [f"error: checkpoint {bad['missing']} does not exist: pass "
                                                "checkpoint=<run dir or .pt file>"]
    bug = ("import sys; from captioning.commands import export; export.main.task = lambda cfg: 1 / 0; "
           "sys.exit(export.main(sys.argv[1:]))")
    done = process(["-c", bug, f"checkpoint={bad['tiny']}"], tmp_path)
    assert done.returncode == 1 and "Traceback" in done.stderr and "ZeroDivisionError" in done.stderr
    # HYDRA_FULL_ERROR=1 shows the whole traceback of a user's mistake too
    done = process(["-m", "captioning.commands.evaluate", f"checkpoint={bad['missing']}"], tmp_path,
                   HYDRA_FULL_ERROR="1")
    assert done.returncode != 0 and "Traceback" in done.stderr and "CheckpointError" in done.stderr
