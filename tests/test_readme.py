"""Every command in README.md is valid: the quickstart pair verbatim first, then each `python scripts/...`
and `captioning-...` command's script or console entry point exists and accepts its options (Hydra
overrides composed against the command's own config in the package; argparse flags and choices checked
against `--help`)."""

import contextlib
import importlib
import io
import re
import runpy
import shlex
import sys
import tomllib
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import captioning.config  # noqa: F401 (registers the schemas the commands' yaml files extend)
from captioning import CONFIG_DIR
from captioning.lm.config import register_schemas as register_lm_schemas
from captioning.sequence.config import register_schemas as register_sequence_schemas
from captioning.utils.schema import plain, problems

register_lm_schemas()  # the apps' yaml files extend their declared options, as their scripts register them
register_sequence_schemas()
ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
QUICKSTART = ['pip install -e . && captioning-train', 'pip install -e ".[test]" && python -m pytest -q']
NOT_RUN = ("pip install", "python -m pytest", "wandb sync", "jupyter", "torchrun")  # install/network/test-suite commands
CONSOLE = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]


def code_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced block."""
    return re.findall(r"^```(\w*)\n(.*?)^```", text, flags=re.S | re.M)


def commands(text: str) -> list[str]:
    """Shell commands from ```bash blocks (continuations joined) and `python scripts/...` inline spans."""
    found = []
    for lang, body in code_blocks(text):
        if lang in ("bash", "sh", "shell"):
            found += [line.strip() for line in body.replace("\\\n", " ").splitlines() if line.strip()]
    prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    found += re.findall(r"`((?:python scripts/|captioning-)[^`]+)`", prose)
    return found


def checked(command: str) -> bool:
    """Whether ``command`` runs one of the project's commands (a script or a console entry point)."""
    return "python scripts/" in command or any(word in CONSOLE for word in command.split())


def script_args(command: str) -> tuple[Path, list[str]]:
    """The script (for a console command: the scripts/ wrapper of its module) and its arguments;
    <placeholders> become one word, env assignments are dropped."""
    command = re.sub(r"<[^>]*>", "PLACEHOLDER", command.split("#")[0])
    words = [w for w in shlex.split(command) if not re.match(r"^[A-Z_]+=", w) and w != "..."]
    console = next((i for i, w in enumerate(words) if w in CONSOLE), None)
    if console is not None:
        module = CONSOLE[words[console]].split(":")[0]
        wrapper = ROOT / "scripts" / f"{module.rsplit('.', 1)[-1]}.py"
        assert command_module(wrapper) == module, f"{words[console]} has no scripts/ wrapper calling {module}"
        return wrapper, words[console + 1 :]
    start = words.index("python") + 1
    return ROOT / words[start], words[start + 1 :]


def command_module(script: Path) -> str | None:
    """The captioning.commands module whose main a scripts/ wrapper calls (None for a standalone script)."""
    found = re.search(r"^from (captioning\.commands\.\w+) import main$", script.read_text(encoding="utf-8"), re.M)
    return found.group(1) if found else None


def hydra_target(script: Path) -> tuple[Path, str] | None:
    """(config dir, config name) of the command's Hydra app (its module's CONFIG_PATH and CONFIG_NAME, or
    a standalone script's @hydra.main decorator); None when it is not Hydra."""
    module = command_module(script)
    if module is not None:
        mod = importlib.import_module(module)
        return (Path(mod.CONFIG_PATH), mod.CONFIG_NAME) if hasattr(mod, "CONFIG_NAME") else None
    source = script.read_text(encoding="utf-8")
    if "@hydra.main" not in source:
        return None
    path = re.search(r"config_path=\"([^\"]+)\"", source).group(1)
    name = re.search(r"config_name=\"([^\"]+)\"", source).group(1)
    return (script.parent / path).resolve(), name


def check_hydra(config_dir: Path, name: str, args: list[str]) -> None:
    """Compose the config with the overrides (each value of a -m sweep separately), as Hydra would; a
    command that trains runs (make_results, search) also composes the training config with each row's."""
    overrides = [a for a in args if not a.startswith("-") and a not in ("job", "hydra", "all")]
    sweeps = [[o] if "[" in o or "{" in o else [f"{o.split('=')[0]}={v}" for v in o.split("=", 1)[1].split(",")]
              if "-m" in args and "=" in o else [o] for o in overrides]
    for k in range(max((len(s) for s in sweeps), default=1)):
        chosen = [s[min(k, len(s) - 1)] for s in sweeps]
        with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
            cfg = compose(name, overrides=chosen, return_hydra_config=any(o.startswith("hydra") for o in chosen))
        if Path(config_dir).name == "tools":  # one schema: values outside its choices or ranges too
            found = problems(OmegaConf.get_type(cfg), {k: v for k, v in plain(cfg).items() if k != "hydra"}, "")
            assert not found, found
        if "overrides" in cfg and "rows" in cfg:  # the training runs' overrides: common, grid points, rows
            common = list(cfg.overrides) + [f"{key}={values[0]}" for key, values in (cfg.get("grid") or {}).items()]
            for row in list((cfg.rows or {"default": []}).values()):
                check_hydra(CONFIG_DIR, "train", common + list(row))


def check_argparse(script: Path, args: list[str], monkeypatch) -> None:
    """`--help` exits 0 and names every flag and fixed choice the command uses (run in-process: fast)."""
    monkeypatch.setattr(sys, "argv", [str(script), "--help"])
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(script), run_name="__main__")
    help_text = buffer.getvalue()
    assert exit_.value.code in (0, None) and "usage" in help_text.lower(), help_text
    for arg in args:
        if arg.startswith("-"):
            assert arg.split("=")[0] in help_text, f"{script.name} has no option {arg}"
        elif "one or more of" in help_text:  # prepare_data's targets
            assert arg in help_text or "/" in arg or "PLACEHOLDER" in arg, f"{script.name}: {arg} is not a choice"


def check_command(command: str, monkeypatch) -> None:
    script, args = script_args(command)
    assert script.is_file(), f"README names a missing script: {script}"
    target = hydra_target(script)
    module = command_module(script)
    main = getattr(importlib.import_module(module), "main", None) if module else None
    if hasattr(main, "register"):  # the schemas its yaml extends
        main.register()
    rewrite = getattr(main, "rewrite", None)
    if rewrite is not None:  # the command's own words first: image paths, targets, row=LABEL, old flags named
        args = rewrite(args)
    if target is not None:
        check_hydra(*target, args)
    elif args:
        check_argparse(script, args, monkeypatch)
    else:  # named without options: it exists and compiles (its --help can import a lot)
        compile(script.read_text(encoding="utf-8"), str(script), "exec")


def test_quickstart_commands_are_the_first_two_blocks_verbatim():
    blocks = code_blocks(README)
    assert [body.strip() for _, body in blocks[:2]] == QUICKSTART


def test_the_readme_covers_its_topics_in_order():
    headings = [h.lower() for h in re.findall(r"^## (.+)$", README, flags=re.M)]
    wanted = ["main job", "coco", "evaluation", "character-level", "notebook", "results"]
    positions = [next(i for i, h in enumerate(headings) if w in h) for w in wanted]
    assert positions == sorted(positions), headings


@pytest.mark.parametrize("command", [c for c in commands(README) if checked(c) and c not in QUICKSTART])
def test_readme_command_is_valid(command, monkeypatch):
    check_command(command, monkeypatch)


def test_every_readme_command_is_checked_or_deliberately_not_run():
    for command in commands(README):
        assert checked(command) or command.startswith(NOT_RUN), f"unchecked README command: {command}"


def test_the_checks_catch_bad_commands(monkeypatch):
    for bad in ("python scripts/train.py cell=transformer", "python scripts/train.py no_such_key=1",
                "python scripts/train.py -m cell=rnn,elman", "python scripts/caption.py x.png colour=blue",
                "python scripts/no_such_script.py", "python scripts/prepare_data.py coco2099",
                "python scripts/compare_runs.py runs/x --no-such-flag", "python scripts/paired.py --a x",
                "python scripts/make_results.py row=x cell=elman", "python scripts/prepare_data.py shapes --root x", "captioning-caption x.png show_beams=2",
                "captioning-caption x.png decoding.colour=blue", "captioning-train cell=transformer",
                "captioning-prepare-data coco2099"):
        with pytest.raises(Exception):
            check_command(bad, monkeypatch)
