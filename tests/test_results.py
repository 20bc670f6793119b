"""The docs/results.md table lists every model per split, then the baselines once per split."""

from captioning.utils.report import update_section
from captioning.experiments.results import results_table


def test_results_table_rows_and_values(tmp_path):
    m = {"test": {"Bleu_4": 0.5, "acc_colour": 0.9}, "test_novel": {"Bleu_4": 0.25},
         "nearest_neighbour/test": {"Bleu_4": 0.4}, "nearest_neighbour/test_novel": {"Bleu_4": 0.1}, "_run": {}}
    table = results_table({"rnn": m, "lstm": {**m, "test": {"Bleu_4": 0.75}}})
    rows = [line for line in table.splitlines()[2:]]
    assert [r.split(" | ")[:2] for r in rows] == [["| rnn", "test"], ["| lstm", "test"], ["| rnn", "test_novel"],
                                                  ["| lstm", "test_novel"], ["| nearest-neighbour", "test"],
                                                  ["| nearest-neighbour", "test_novel"]]
    assert "| 0.750 |" in rows[1] and "| 0.900 |" in rows[0] and "| 0.400 |" in rows[4]
    # sections of a shared report are replaced in place, others kept
    out = tmp_path / "r.md"
    update_section(out, "a", "first")
    update_section(out, "b", "second")
    update_section(out, "a", "third")
    text = out.read_text()
    assert "third" in text and "second" in text and "first" not in text
    assert text.index("third") < text.index("second")


def test_results_table_adds_the_human_rows_last():
    m = {"test": {"Bleu_4": 0.5}, "nearest_neighbour/test": {"Bleu_4": 0.4}, "_run": {}}
    rows = results_table({"lstm": m}, human={"test": {"Bleu_1": 0.9, "Bleu_4": 0.6}}).splitlines()[2:]
    assert rows[-1].startswith("| human (leave-one-out) | test | 0.900 | - | - | 0.600 | - |")


def test_by_count_table_lists_each_object_count():
    from captioning.experiments.results import by_count_table

    acc = {"colour": 0.5, "colour@1": 1.0, "colour@2": 0.25, "relation@2": 0.75, "position@1": 0.9}
    rows = by_count_table({"lstm": {"test": acc}}).splitlines()
    assert rows[0] == "| model | split | objects | count | colour | shape | size | position | relation |"
    assert rows[2] == "| lstm | test | 1 | - | 1.000 | - | - | 0.900 | - |"
    assert rows[3] == "| lstm | test | 2 | - | 0.250 | - | - | - | 0.750 |"
    # a split without scenes of some count has no row for it
    long = by_count_table({"lstm": {"test": acc, "test_long": {"colour@4": 0.5}}}).splitlines()
    assert [r.split(" | ")[1:3] for r in long[2:]] == [["test", "1"], ["test", "2"], ["test_long", "4"]]


def test_group_table_shows_the_hard_groups_and_place_table_the_long_scenes():
    from captioning.experiments.results import group_table, place_table

    acc = lambda n, scene: {"images": n, "scene": scene, "binding": scene + 0.1}  # noqa: E731
    groups = {"lstm": {"test": {"objects=1": acc(3, 0.5), "objects=3": acc(2, 0.2)},
                       "test_shifted": {"objects=2": acc(4, 0.3), "style=noise": acc(2, 0.25)},
                       "test_long": {"objects=4": acc(5, 0.0), "objects=5": acc(6, 0.0)}}}
    rows = group_table(groups).splitlines()
    assert rows[2:] == ["| lstm | test_shifted | style=noise | 2 | 0.250 | 0.350 |",
                        "| lstm | test_long | objects=4 | 5 | 0.000 | 0.100 |",
                        "| lstm | test_long | objects=5 | 6 | 0.000 | 0.100 |"]
    assert group_table({"lstm": {"test": groups["lstm"]["test"]}}) == ""  # nothing but 1-3 objects
    bound = lambda b: {"bound": b, "objects": 4}  # noqa: E731
    places = {"lstm": {"test": {"place=1": bound(1.0)},
                       "test_long": {"all": bound(0.5), "place=1": bound(0.9), "place=4": bound(0.2),
                                     "place=5": bound(0.0)}}}
    rows = place_table(places).splitlines()
    assert rows[0] == "| model | split | place 1 | place 2 | place 3 | place 4 | place 5 |"
    assert rows[2:] == ["| lstm | test_long | 0.900 | - | - | 0.200 | 0.000 |"]
    assert place_table({"lstm": {"test": places["lstm"]["test"]}}) == ""


def test_write_results_renders_saved_runs(tiny_run, tmp_path):
    # the section is redrawn from summary.json and each run's saved captions, without training
    import json
    import shutil

    from captioning.experiments.results import write_results
    from tests.conftest import TINY

    run_dir, metrics = tiny_run
    root = tmp_path / "results"
    shutil.copytree(run_dir / "eval", root / "lstm" / "eval")
    meta = {"overrides": TINY, "seconds": {"lstm": 60.0}, "machine": "test machine"}
    (root / "summary.json").write_text(json.dumps({"lstm": metrics, "_meta": meta}))
    out = tmp_path / "results.md"
    write_results(str(root), str(out))
    text = out.read_text()
    assert "Machine: test machine" in text and "lstm 1.0 min" in text
    assert "| human (leave-one-out) | test |" in text
    assert f"| lstm | test | {metrics['test']['Bleu_1']:.3f} |" in text
    assert "| lstm | test | 1 |" in text  # the by-object-count table
    # scene / binding by object count and by whether the scene's description occurs in train, with the sizes
    from captioning.data.datasets import load_dataset
    from captioning.data.scene_metrics import split_breakdown
    from captioning.evaluation.scoring import load_results
    from captioning.experiments.results import compose_run

    cfg = compose_run(TINY)
    data = load_dataset(cfg.data, ["train", "test"])
    groups = split_breakdown(data["test"], load_results(run_dir / "eval" / "results_test.json"), data["train"])
    line = next(x for x in text.splitlines() if x.startswith("| lstm | test | ") and " / " in x)
    cells = line.split(" | ")[2:7]
    for name, cell in zip(("objects=1", "objects=2", "objects=3", "seen_in_train", "unseen_in_train"), cells):
        want = f"{groups[name]['scene']:.3f} / {groups[name]['binding']:.3f}" if name in groups else "-"
        assert cell.strip(" |") == want
    assert f"| (size) | test | {int(groups['objects=1']['images'])} images |" in text
    # what the captions call the objects of unseen colour-shape pairs: test_novel has them, test none
    from captioning.data.scene_metrics import unseen_pair_colours

    data = load_dataset(cfg.data, ["train", "test_novel"])
    named = unseen_pair_colours(data["test_novel"], load_results(run_dir / "eval" / "results_test_novel.json"),
                                data["train"])
    assert named["objects"] > 0
    row = next(x for x in text.splitlines() if x.startswith(f"| lstm | test_novel | {named['objects']:.0f} | "))
    assert row.split(" | ")[3] == f"{named['composed']:.3f}"
    table = text.split("unseen_pair_colours")[1].split("\n\n")[1]
    assert row in table and "| lstm | test | " not in table


def test_render_without_saved_runs_says_what_to_run(tmp_path):
    import pytest

    from captioning.experiments.results import write_results

    with pytest.raises(FileNotFoundError, match="captioning-make-results"):
        write_results(str(tmp_path / "none"), str(tmp_path / "r.md"))
    assert not (tmp_path / "r.md").exists()


def test_results_table_shows_mean_and_sd_over_seeds_and_extra_rows():
    seeds = [{"test": {"Bleu_4": 0.5, "acc_scene": 0.25}, "most_frequent/test": {"Bleu_4": 0.1}},
             {"test": {"Bleu_4": 0.7, "acc_scene": 0.25}, "most_frequent/test": {"Bleu_4": 0.2}}]
    table = results_table({"lstm": seeds}, extra=[("chance", "test", {"acc_scene": 0.01}),
                                                   ("chance", "val", {"acc_scene": 0.5})])
    rows = table.splitlines()
    assert "| CIDEr | CIDEr (split df) | scene | binding |" in rows[0]
    assert rows[2].startswith("| lstm | test | - | - | - | 0.600 ± 0.141 | - | - | 0.250 ± 0.000 |")
    assert rows[3].startswith("| most-frequent | test | - | - | - | 0.100 |")  # baselines: the first seed's
    assert rows[4].startswith("| chance | test |") and "0.010" in rows[4] and len(rows) == 5  # no val row


def test_chance_and_ceiling_rows_are_computed_from_the_data():
    import random

    from captioning.data.coco import ImageRecord
    from captioning.data.scene_metrics import chance_accuracy
    from captioning.data.shape_captions import describe
    from captioning.data.shapes import sample_scene
    from captioning.experiments.results import chance_and_ceiling

    pairs = [(c, s) for c in ("red", "green", "blue") for s in ("circle", "square", "star")]

    def recs(name, n):
        out = []
        for i in range(n):
            rng = random.Random(f"{name}{i}")
            scene = sample_scene(rng, pairs, [1 / 3] * 3, 128)
            out.append(ImageRecord(i, "", describe(scene, rng, 5), scene))
        return out

    train, test = recs("train", 60), recs("test", 30)
    rows = chance_and_ceiling(train, {"test": test})
    (chance_name, _, chance), (ceiling_name, _, ceiling) = rows
    assert chance_name.startswith("chance") and ceiling_name.startswith("ceiling")
    assert chance == {f"acc_{k}": v for k, v in chance_accuracy(train, test).items()}
    assert 0 < chance["acc_scene"] < 0.5
    # the references parse back to their scenes (tests/test_scene_metrics.py): the ceiling is 1
    assert ceiling["acc_scene"] == ceiling["acc_binding"] == ceiling["acc_count"] == 1.0


def test_make_results_runs_every_cell_at_every_seed_and_renders_intervals(tiny_run, tmp_path, monkeypatch):
    """make_results with the training replaced by copies of the tiny run: the layout, the seeds, the
    summary, and the protocol section (mean ± sd, intervals, chance and ceiling rows)."""
    import shutil

    import pytest

    import captioning.pipeline as pipeline
    from captioning.experiments.results import make_results
    from captioning.utils.io import save_json
    from tests.conftest import TINY

    run_dir, metrics = tiny_run
    calls = []

    def fake_run(opts, target):
        calls.append((opts.training.model["cell"]["name"], opts.training.seed, str(target)))
        shutil.copytree(run_dir / "eval", target / "eval")
        (target / "checkpoints").mkdir(exist_ok=True)
        shutil.copy(run_dir / "checkpoints" / "best.pt", target / "checkpoints" / "best.pt")
        shutil.copy(run_dir / "history.json", target / "history.json")
        save_json(metrics, target / "metrics.json")  # as the main job does
        return metrics

    monkeypatch.setattr(pipeline, "run", fake_run)
    root, out = tmp_path / "results", tmp_path / "results.md"
    out.write_text("# Results\n\n<!-- begin:shapes -->\nold table\n<!-- end:shapes -->\n")
    make_results(TINY, cells=("lstm", "gru"), out=str(out), run_root=str(root), seeds=2)
    assert [c[:2] for c in calls] == [("lstm", 0), ("gru", 0), ("lstm", 1), ("gru", 1)]  # seed by seed
    assert calls[2][2] == str(root / "lstm" / "seed1")
    text = out.read_text()
    assert "old table" in text and "<!-- begin:shapes_protocol -->" in text  # the measured tables stay
    assert "seeds=2" in text and "mean ± sd over 2 seeds" in text
    b4 = metrics["test"]["Bleu_4"]
    assert f"| lstm | test | {metrics['test']['Bleu_1']:.3f} ± 0.000 |" in text
    headline = next(line for line in text.splitlines() if line.startswith("| gru | test | ") and "[" in line)
    low, high = (float(x) for x in headline.split("[")[1].split("]")[0].split(", "))
    assert low <= round(b4, 3) <= high and headline.startswith(f"| gru | test | {b4:.3f} ± 0.000 [")
    assert "| chance (training frequencies) | test |" in text
    # the cost of each model: its parameters (counted from the checkpoint) and its seconds per epoch
    from captioning.evaluation.cost import parameter_count, run_epoch_seconds
    cost = next(line for line in text.splitlines() if line.startswith("| lstm | ") and "," in line.split(" | ")[1])
    assert cost.split(" | ")[1] == f"{parameter_count(run_dir):,}"
    assert cost.split(" | ")[2] == f"{run_epoch_seconds(run_dir, 'cross_entropy'):.1f} ± 0.0"
    assert "relation_strict" in text
    ceiling = next(line for line in text.splitlines() if line.startswith("| ceiling (a reference as the caption) | test |"))
    assert ceiling.split(" | ")[8:10] == ["1.000", "1.000"]  # scene, binding
    with pytest.raises(ValueError, match="seeds=N"):
        make_results([*TINY, "seed=3"], run_root=str(root), out=str(out))
    # finished runs are read, not trained again: an interrupted make_results continues where it stopped
    (root / "gru" / "seed1" / "metrics.json").unlink()  # as if killed during that run
    calls.clear()
    shutil.rmtree(root / "gru" / "seed1" / "eval")
    make_results(TINY, cells=("lstm", "gru"), out=str(out), run_root=str(root), seeds=2)
    assert [c[:2] for c in calls] == [("gru", 1)]
    # a run made with other overrides is not mistaken for this one; rows take their own overrides
    calls.clear()
    make_results(TINY, rows={"lstm": ["cell=lstm"], "small": ["cell=gru", "model.hidden_size=8"]},
                 out=str(out), run_root=str(root), seeds=1)
    assert [c[:2] for c in calls] == [("gru", 0)]
    assert "row=lstm cell=lstm row=small cell=gru model.hidden_size=8" in out.read_text()
    # another section of the same file: its own heading and command; the default section stays as it was
    before = out.read_text().split("<!-- begin:shapes_protocol -->")[1].split("<!-- end:shapes_protocol -->")[0]
    make_results(TINY, rows={"lstm": ["cell=lstm"]}, out=str(out), run_root=str(root), seeds=1,
                 section="models", title="every model")
    text = out.read_text()
    assert before in text and "<!-- begin:models -->" in text and ": every model\n" in text
    section = text.split("<!-- begin:models -->")[1]  # the common overrides come before the rows
    assert "section=models title='every model' " in section and " row=lstm cell=lstm`" in section
    with pytest.raises(ValueError, match="section"):
        make_results(TINY, rows={"lstm": ["cell=lstm"]}, out=str(out), run_root=str(root), seeds=1, section="a b")
    with pytest.raises(ValueError, match="row labels"):
        make_results(TINY, rows={"a/b": []}, run_root=str(root), out=str(out))


def test_make_results_jobs_trains_runs_in_parallel_processes(tiny_root, tmp_path):
    """jobs=2: data and features prepared once in this process, then two real tiny runs in two spawned
    processes (one thread each); both finish, and the summary holds both seeds."""
    import json

    from captioning.experiments.results import make_results
    from tests.conftest import TINY

    root, out = tmp_path / "results", tmp_path / "results.md"
    keys = [*TINY, f"cache_dir={tiny_root / 'cache'}", "evaluate.baselines=[]"]
    runs = make_results(keys, rows={"lstm": ["cell=lstm"]}, out=str(out), run_root=str(root), seeds=2, jobs=2)
    assert sorted(runs["lstm"]) == ["0", "1"]
    for seed in (0, 1):
        metrics = json.loads((root / "lstm" / f"seed{seed}" / "metrics.json").read_text())
        assert metrics["_run"]["seed"] == seed and 0 <= metrics["test"]["Bleu_4"] <= 1
    summary = json.loads((root / "summary.json").read_text())
    assert summary["_meta"]["jobs"] == 2 and summary["lstm"]["1"]["_run"]["seed"] == 1
    assert "jobs=2" in out.read_text()


def test_a_worker_starts_no_run_after_a_stopped_run_or_once_its_parent_is_gone(tmp_path, monkeypatch):
    """A pool worker whose run stopped on a signal (saved, resumable) refuses the runs still queued, and so does a
    worker whose make_results has exited: Ctrl-C or a kill leaves no run training on its own."""
    import os
    import signal

    import pytest

    from captioning.experiments import results
    from captioning.utils.interrupts import Interrupted

    started = []

    def train_one(keys, target):
        started.append(target)
        if target.name == "stopped":
            raise Interrupted(signal.SIGINT, "training stopped")
        return {"ok": True}

    monkeypatch.setattr(results, "train_one", train_one)
    monkeypatch.setattr(results.WorkerState, "stopped", False)
    parent = os.getppid()  # this process plays the worker; its parent, make_results
    assert results.train_in_worker([], tmp_path / "a", parent) == {"ok": True}
    with pytest.raises(Interrupted, match="not started: make_results or the search has exited"):
        results.train_in_worker([], tmp_path / "orphan", parent + 1)
    with pytest.raises(Interrupted, match="training stopped"):
        results.train_in_worker([], tmp_path / "stopped", parent)
    with pytest.raises(Interrupted, match="not started: a run of this worker was stopped"):
        results.train_in_worker([], tmp_path / "queued", parent)
    assert [t.name for t in started] == ["a", "stopped"]


def test_a_stopped_run_continues_from_its_last_checkpoint_and_counts_as_finished_only_at_its_end(tmp_path,
                                                                                                   monkeypatch):
    """make_results' run stopped by a signal resumes (resume=auto) when the same keys are asked again; a run dir
    left by other keys starts afresh, and a metrics.json of an earlier run there does not count as finished."""
    import json
    import signal

    import pytest

    from captioning import pipeline
    from captioning.experiments.results import finished_run, train_one
    from captioning.utils.interrupts import Interrupted
    from tests.conftest import TINY

    resumed = []

    def run(cfg, target):
        resumed.append(cfg.resume)
        (target / "checkpoints").mkdir(parents=True, exist_ok=True)
        (target / "checkpoints" / "last.pt").write_bytes(b"")
        if len(resumed) == 2:
            raise Interrupted(signal.SIGTERM, "stopped")
        (target / "metrics.json").write_text(json.dumps({"test": {"Bleu_4": 0.5}}))
        return {}

    monkeypatch.setattr(pipeline, "run_options", lambda cfg: cfg)
    monkeypatch.setattr(pipeline, "run", run)
    target, keys = tmp_path / "lstm" / "seed0", [*TINY, "seed=0"]
    train_one([*keys, "cell=gru"], target)  # another row's finished run in this folder
    assert finished_run(target, [*keys, "cell=gru"]) is not None
    with pytest.raises(Interrupted):
        train_one([*keys, "num_threads=1"], target)
    assert finished_run(target, keys) is None  # stopped: the earlier run's metrics.json is not this run's
    train_one([*keys, "num_threads=1"], target)
    assert resumed == [None, None, "auto"]  # the other keys' checkpoint is not resumed; the stopped run is
    assert finished_run(target, keys) == {"test": {"Bleu_4": 0.5}}


def test_make_results_command_reads_rows_jobs_and_common_overrides(monkeypatch):
    import captioning.commands.make_results as command

    got = {}
    monkeypatch.setattr(command, "make_results", lambda overrides, **kw: got.update(overrides=overrides, **kw))
    assert command.main(["seeds=2", "jobs=2", "schedule=smoke", "row=sat", "model=show_attend_tell",
                         "row=tf", "experiment=transformer", "seed_note=x"]) == 0
    assert got["overrides"] == ["schedule=smoke"] and got["seeds"] == 2 and got["jobs"] == 2
    assert got["rows"] == {"sat": ["model=show_attend_tell"], "tf": ["experiment=transformer", "seed_note=x"]}
    command.main([])
    assert got["rows"] is None and got["jobs"] == 1 and got["overrides"] == [] and got["section"] == "shapes_protocol"
    command.main(["section=models", "title=every model"])
    assert got["section"] == "models" and got["title"] == "every model"
    assert command.main(["--seeds", "2"]) == 2  # the old spelling is named, not guessed


def test_the_machine_line_says_whether_the_cpu_multiplies_bfloat16():
    """The same CPU name has come with and without bf16 instructions, and precision=auto follows them."""
    from captioning.utils.precision import native_bf16
    from captioning.utils.report import machine_line

    line = machine_line()
    assert ("native bf16" in line and "no native bf16" not in line) == native_bf16("cpu")
    assert line.count("bf16") == 1 and "load average" in line


def test_measures_table_gives_mean_and_sd_per_model_and_split_and_dashes_where_missing():
    from captioning.experiments.results import measures_table

    seeds = [{"test": {"CHAIR_i": 0.1, "distinct_2": 0.01}, "test_novel": {"CHAIR_i": 0.3, "pair_recall@5": 0.5}},
             {"test": {"CHAIR_i": 0.3, "distinct_2": 0.03}, "test_novel": {"CHAIR_i": 0.5, "pair_recall@5": 0.7}}]
    lines = measures_table({"lstm": seeds}).splitlines()
    assert lines[0] == "| model | split | CHAIR_i | distinct_2 | pair_recall@5 |"
    assert lines[2] == "| lstm | test | 0.200 ± 0.141 | 0.020 ± 0.014 | - |"
    assert lines[3] == "| lstm | test_novel | 0.400 ± 0.141 | - | 0.600 ± 0.141 |"
    assert measures_table({"lstm": [{"test": {"Bleu_4": 0.5}}]}) == ""  # runs from before the measures


def test_shifted_differences_pair_image_i_of_each_split(tmp_path):
    import json

    import pytest

    from captioning.experiments.results import shifted_differences, shifted_table

    def run(seed, original, shifted):
        d = tmp_path / f"seed{seed}"
        (d / "eval").mkdir(parents=True)
        for split, values, first_id in (("test", original, 100), ("test_shifted", shifted, 900)):
            entries = [{"image_id": first_id + i, "acc_scene": v} for i, v in enumerate(values)]
            (d / "eval" / f"per_image_{split}.json").write_text(json.dumps(entries))
        return d

    # the shifted split redraws test's first 3 scenes; test has a 4th that is left out of the pairing
    dirs = {"lstm": [run(0, [1, 1, 0, 1], [0, 1, 0]), run(1, [1, 0, 1, 0], [1, 0, 0])]}
    out = shifted_differences(dirs, {"test_shifted": "test", "val_shifted": "val"}, ["test", "test_shifted"], 200)
    interval = out["lstm"]["test_shifted - test"]["acc_scene"]
    assert interval.estimate == pytest.approx((1 / 3 + 1 / 3) / 2 - (2 / 3 + 2 / 3) / 2)
    assert interval.low <= interval.estimate <= interval.high
    assert set(out["lstm"]["test_shifted - test"]) == {"acc_scene"}  # the metrics with per-image values
    rows = shifted_table(out).splitlines()
    assert rows[0] == "| model | splits | acc_scene |"
    assert rows[2].startswith("| lstm | test_shifted - test | -0.333 [")
    assert shifted_differences(dirs, {"test_shifted": "test"}, ["test"], 200) == {}  # shifted split not scored
