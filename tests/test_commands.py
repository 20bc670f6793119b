"""The commands: every console entry point of pyproject is a main in captioning/commands, with no scripts/
wrapper beside it; they find the configs shipped in the package from any directory, and take a user's own config
folder with --config-dir; the caption command's Hydra config has evaluation's decoding.* keys; every one
takes key=value options, names an old --flag's new spelling, and answers --help from a page of its declared
options without importing torch."""

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException

from captioning import CONFIG_DIR
from captioning.commands.caption import hydra_argv
from captioning.commands.cli import HELP_DIR, UserError, check_run_config
from captioning.config import CaptionRunConfig, ConfigError
from captioning.utils.schema import build

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
CONSOLE = PYPROJECT["project"]["scripts"]


def console(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run console command ``name`` as its generated launcher would (import the entry point, exit with
    what main returns), without installing anything: only PYTHONPATH points at this checkout."""
    module, func = CONSOLE[name].split(":")
    code = f"import sys; from {module} import {func}; sys.argv[0] = {name!r}; sys.exit({func}())"
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "HOME": str(cwd)}
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=300)


def test_the_expected_commands_exist():
    for name in ("train", "evaluate", "caption", "extract", "prepare-data", "train-lm", "sample-lm",
                 "make-results", "export", "search", "model-table", "render-attention"):
        assert f"captioning-{name}" in CONSOLE


@pytest.mark.parametrize("name", sorted(CONSOLE))
def test_every_console_command_is_a_main_in_the_package_and_spelled_one_way(name):
    import importlib

    module, func = CONSOLE[name].split(":")
    assert module.startswith("captioning.commands.") and func == "main"
    assert callable(importlib.import_module(module).main)
    wrapper = ROOT / "scripts" / f"{module.rsplit('.', 1)[-1]}.py"
    assert not wrapper.exists(), f"{wrapper} repeats {name}: a command has one spelling, the console command"


def test_every_yaml_is_package_data():
    patterns = PYPROJECT["tool"]["setuptools"]["package-data"]["captioning"]
    shipped = {p for pattern in patterns for p in (ROOT / "captioning").glob(pattern)}
    every = set(CONFIG_DIR.rglob("*.yaml"))
    assert every and every <= shipped, sorted(str(p) for p in every - shipped)
    assert not (ROOT / "configs").exists(), "the configs live in captioning/configs"


def test_caption_help_runs_from_any_directory_on_the_packaged_configs(tmp_path):
    done = console("captioning-caption", "--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "captioning-caption IMAGE_OR_FOLDER" in done.stdout and "decoding.method=beam" in done.stdout
    info = console("captioning-caption", "--info", "searchpath", cwd=tmp_path)
    assert info.returncode == 0, info.stderr
    assert f"file://{CONFIG_DIR}" in info.stdout  # the package's configs, not the working directory's
    assert list(tmp_path.iterdir()) == [], "the caption command writes nothing"


def test_a_user_config_dir_adds_configs_in_front_of_the_packaged_ones(tmp_path):
    user = tmp_path / "my_configs"
    (user / "data").mkdir(parents=True)
    (user / "data" / "my_set.yaml").write_text("defaults:\n  - shapes_tiny\n  - _self_\n\nname: my_set\n"
                                               "min_word_count: 3\n")
    done = console("captioning-train", "--config-dir", str(user), "data=my_set", "--cfg", "job", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "name: my_set" in done.stdout and "min_word_count: 3" in done.stdout
    assert "test_novel: 16" in done.stdout  # what it extends, from the package
    bad = console("captioning-train", "--config-dir", str(user), "data=my_set", "data.colour=1", "--cfg", "job",
                  cwd=tmp_path)
    assert bad.returncode != 0 and "colour" in bad.stderr  # the user's yaml meets the same declared options


def caption_cfg(*overrides: str):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose("caption", overrides=list(overrides))


def test_caption_takes_the_decoding_keys_of_evaluate():
    cfg = caption_cfg("checkpoint=run", "images=[a.png]", "decoding.method=beam", "decoding.beam_size=5",
                      "decoding.length_alpha=0.7", "decoding.temperature=0.5", "decoding.batch_size=4", "keep_beams=2",
                      "seed=3")
    check_run_config(CaptionRunConfig, cfg)
    opts = build(CaptionRunConfig, cfg)
    d = opts.decoding
    assert (d.method, d.beam_size, d.length_alpha, d.batch_size, opts.keep_beams) == ("beam", 5, 0.7, 4, 2)
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        evaluate = compose("evaluate")
    assert set(cfg.decoding) == set(evaluate.decoding)


@pytest.mark.parametrize("override, message", [("decoding.colour=1", "Key 'colour' not in 'DecodingConfig'"),
                                               ("colour=1", "Key 'colour' not in 'CaptionRunConfig'"),
                                               ("decoding.beam_size=three", "decoding.beam_size")])
def test_caption_refuses_unknown_keys_and_wrong_types_by_name(override, message):
    with pytest.raises(ConfigCompositionException) as info:
        caption_cfg("checkpoint=run", override)
    assert message in str(info.value) + str(info.value.__cause__)


def test_caption_names_every_bad_value_and_the_old_spellings():
    with pytest.raises(ConfigError) as info:
        check_run_config(CaptionRunConfig, caption_cfg("decoding.method=topk", "keep_beams=-1"))
    text = str(info.value)
    assert "decoding.method must be one of" in text and "keep_beams must be >= 0" in text and "checkpoint=" in text
    for old, new in (("show_beams=3", "keep_beams="), ("method=greedy", "decoding.method="),
                     ("beam_size=5", "decoding.beam_size=")):
        with pytest.raises(UserError, match=new):
            hydra_argv(["a.png", old])


def test_caption_arguments_become_hydra_overrides(tmp_path):
    odd = tmp_path / "it's a=b.png"
    odd.write_bytes(b"")
    args = hydra_argv(["x.png", "folder", str(odd), "checkpoint=run", "--cfg", "job", "decoding.beam_size=5",
                       "--config-dir", "mine"])
    assert args[:-1] == ["checkpoint=run", "--cfg", "job", "decoding.beam_size=5", "--config-dir", "mine"]
    cfg = caption_cfg(args[0], args[3], args[-1])
    assert list(cfg.images) == ["x.png", "folder", str(odd)]


# --- one style, and --help from the declared options ---------------------------------------------------------


def help_run(name: str, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """``name --help`` as a console launcher runs it, then the heavy modules it imported, one per line."""
    module, func = CONSOLE[name].split(":")
    code = (f"import sys; from {module} import {func}; sys.argv[0] = {name!r}; status = {func}(['--help']); "
            "print('IMPORTED', *sorted(m for m in ('torch', 'torchvision', 'timm', 'hydra', 'numpy') "
            "if m in sys.modules)); sys.exit(status)")
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(cwd)}
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True, env=env,
                          timeout=120)


@pytest.mark.parametrize("name", sorted(CONSOLE))
def test_every_command_answers_help_without_importing_torch(name, tmp_path):
    done = help_run(name, tmp_path)
    assert done.returncode == 0, done.stderr
    page, imported = done.stdout.rsplit("IMPORTED", 1)
    assert imported.split() == [], f"{name} --help imported {imported.split()}"
    assert name in page and "Options (key=default" in page and "--cfg job" in page
    assert list(tmp_path.iterdir()) == [], "--help writes nothing"


def test_train_help_shows_its_own_groups_and_every_declared_option_doc(tmp_path):
    from captioning.config import RunConfig
    from captioning.nn.decoding import DecodingConfig
    from captioning.utils.schema import docs

    page = help_run("captioning-train", tmp_path).stdout
    groups = page.split("Config groups")[1].split("Options (")[0]
    assert "model: show_attend_tell, show_tell*, transformer" in groups and "cell: gru, lstm*, rnn" in groups
    assert "schema" not in page and "corpus" not in groups and "task:" not in groups  # not internal, not the LM's
    flat = " ".join(page.split())  # the docs are wrapped
    for schema, prefix in ((RunConfig, ""), (DecodingConfig, "decoding.")):
        for name, _, doc in docs(schema):
            assert f"{prefix}{name}" in page and " ".join(doc.split()) in flat, name
    assert "data.generator.image_size=128" in page and "encoder.image_size=256" in page


def test_the_help_pages_are_up_to_date():
    """Rewrite them with `python -m captioning.commands.write_help` when this fails."""
    from captioning.commands.write_help import help_text, hydra_commands

    commands = hydra_commands()
    assert {c.name for c in commands} == set(CONSOLE)  # every command is a Hydra command: one style
    for command in commands:
        page = HELP_DIR / f"{command.name}.txt"
        assert page.read_text(encoding="utf-8") == help_text(command), f"{page} is out of date"


@pytest.mark.parametrize("name, args, message", [
    ("captioning-render-attention", ["--checkpoint", "runs/x"], "--checkpoint is now checkpoint= (e.g. checkpoint=runs/x)"),
    ("captioning-paired", ["--a", "x", "--b", "y"], "--a is now a= (e.g. a=x)"),
    ("captioning-paired", ["a=x", "b=y", "--json"], "--json is now json=true"),
    ("captioning-compare-runs", ["runs/x", "--chart-metric", "CIDEr"], "--chart-metric is now chart_metric="),
    ("captioning-prepare-data", ["shapes", "--keep-archives"], "--keep-archives is now keep_archives=true"),
    ("captioning-prepare-data", ["shapes", "--config", "shapes_tiny"], "--config is now data= (e.g. data=shapes_tiny)"),
    ("captioning-make-results", ["--row", "sat", "model=show_attend_tell"], "--row LABEL ... is now row=LABEL"),
    ("captioning-search", ["--grid", "model.dropout=0.1,0.2"], "a training override with several values"),
    ("captioning-search", ["--split", "val_novel"], "--split is now split= (e.g. split=val_novel)"),
    ("captioning-model-table", ["--out", "t.md"], "--out is now out="),
    ("captioning-export", ["--out", "x"], "takes key=value options, not --out"),
])
def test_an_old_flag_is_one_line_naming_its_new_spelling(name, args, message, capsys):
    import importlib

    main = importlib.import_module(CONSOLE[name].split(":")[0]).main
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_model_table_names_the_new_spelling_of_label_equals_run(tmp_path, capsys):
    from captioning.commands.model_table import main

    assert main([f"lstm={tmp_path}"]) == 2
    assert f"runs.lstm={tmp_path}" in capsys.readouterr().err


def test_the_runs_commands_split_their_own_options_from_the_training_overrides():
    from captioning.commands import make_results, search

    assert make_results.hydra_argv(["seeds=2", "schedule=smoke", "row=a", "cell=gru", "row=b"]) == [
        "seeds=2", "overrides=['schedule=smoke']", "++rows={a:['cell=gru'],b:[]}"]
    assert search.hydra_argv(["jobs=2", "model.dropout=0.1,0.2", "data.eval_splits=[val,val_novel]"]) == [
        "jobs=2", "overrides=['data.eval_splits=[val,val_novel]']", "++grid={model.dropout:['0.1','0.2']}"]
    with pytest.raises(UserError, match="goes before the first row="):
        search.hydra_argv(["row=a", "model.dropout=0.1,0.2"])


def test_a_title_is_text_even_with_commas_and_brackets(capsys):
    from captioning.commands import search

    title = "bf16 steps vs fp32, on val (3 seeds)"
    assert search.hydra_argv([f"title={title}", "row=a"])[0] == f"title='{title}'"
    assert search.hydra_argv(["title='already quoted'"])[0] == "title='already quoted'"
    assert search.main(["--cfg", "job", f"title={title}", "row=a"]) == 0
    assert f"title: {title}" in capsys.readouterr().out
