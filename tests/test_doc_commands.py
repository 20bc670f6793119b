"""Every command in the docs runs today.

Every `captioning-*` and `python scripts/*` command in README.md, docs/*.md and examples/**/README.md (shell
lines of code blocks and inline code spans, a span across lines included) is composed as its command would
compose it, without running it: a console command through its own ``main`` (the command machinery of
captioning/commands/cli.py: its rewrite of positional and row=LABEL arguments, its config, ``--config-dir``)
with Hydra's ``--cfg job``, in-process; then every value is checked against the declared options (range,
choices, the model's own options), as the command checks it before any work; a command that trains runs
(search, make_results) also composes the training config of each row and of each grid value (once each). A
script with no console command (the benchmark driver, render_notebook) parses its arguments (argparse, stopped
after parsing) or, for a Hydra script, composes with ``--cfg job`` too.

Placeholders in the docs (``<run dir>``, ``runs/DATE/TIME``, ``RUN_DIR``, ``seed<k>``, ``...``) are values, never
keys: a value that names a placeholder is replaced by a sample of the key's type (a path stays a string), so
every key is still checked (a placeholder group choice, ``model=<name>``, and a placeholder ``--config-dir`` are
the reader's own: left out). Sweeps (``-m key=a,b``) are composed one value at a time (``--cfg`` does not take
``-m``). Overrides of a Hydra plugin that is not installed are left out, listed in ``PLUGINS`` with the reason.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import io
import re
import runpy
import shlex
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest
from omegaconf import OmegaConf

from captioning.commands.cli import HYDRA_VALUE_FLAGS, sweep_values, wants_help

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "examples").glob("**/README.md")])
CONSOLE = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
# scripts with no console command: `python scripts/NAME.py` is how the docs spell them
SCRIPTS_ONLY = {"benchmark.py", "render_notebook.py", "long_term_dependency.py"}
# shell lines of the docs' code blocks that are not the project's commands: installs, the test suite, the shell
NOT_OURS = ("pip ", "python -m pytest", "python -m venv", "wandb ", "jupyter ", "torchrun ", "export ", "du ", "cd ",
            "git ", "sbatch ", "srun ")
# Hydra plugins the docs use that a test environment may lack: group -> (module that provides it, why skipped)
PLUGINS = {
    "hydra/launcher": ("hydra_plugins.hydra_submitit_launcher",
                       "the SLURM and local launchers need hydra-submitit-launcher (the cluster extra)"),
}
# a placeholder in a value: <anything>, a word in capitals (RUN_DIR, DATE/TIME, NAME, K; not CIDEr) or ...
PLACEHOLDER = re.compile(r"<[^<>`\n]*>|(?<![A-Za-z0-9])[A-Z][A-Z0-9_]*(?![A-Za-z0-9])|\.\.\.")
ANGLE = re.compile(r"<[^<>`\n]*>")


@dataclass(frozen=True)
class DocCommand:
    """One command as a doc writes it: where, and the words from the program on (env assignments dropped)."""

    where: str
    program: str  # a console command (captioning-train) or a script (scripts/benchmark.py)
    args: tuple[str, ...]
    exports: tuple[str, ...] = ()  # PYTHONPATH folders its code block exports first

    def __str__(self) -> str:
        return f"{self.where}: {self.program} {' '.join(self.args)}".strip()


def shell_lines(body: str) -> list[tuple[int, str]]:
    """(line offset, command) of a code block: continuations joined, comments and blank lines dropped."""
    out, pending, start = [], "", 0
    for i, line in enumerate(body.splitlines()):
        if not pending:
            start = i
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        text = (pending + line).strip()
        pending = ""
        if text and not text.startswith("#"):
            out.append((start, text))
    return out


def is_ours(text: str) -> bool:
    """Whether ``text`` runs one of the project's commands (a console command or a scripts/ file)."""
    return "python scripts/" in text or any(word in CONSOLE for word in re.split(r"[\s`]+", text))


def split_commands(text: str) -> list[str]:
    """The commands of one shell line or span (``a && b``, ``a; b``), each without its trailing comment."""
    text = re.sub(r"(^|\s)#.*$", "", text)
    return [part.strip() for part in re.split(r"\s(?:&&|;|\|\|)\s", text) if part.strip()]


def words(command: str) -> list[str]:
    """The command's words: each <placeholder> one word (its spaces kept inside), quotes removed."""
    found = {}

    def hold(match: re.Match) -> str:
        key = f"ANGLE{len(found)}"
        found[key] = match.group(0)
        return key

    held = ANGLE.sub(hold, command)
    return [re.sub(r"ANGLE\d+", lambda m: found[m.group(0)], w) for w in shlex.split(held)]


def parse(where: str, command: str, exports: tuple[str, ...] = ()) -> DocCommand | None:
    """The DocCommand of one command's text (None when it runs none of the project's programs)."""
    ws = words(command)
    for i, w in enumerate(ws):
        if w in CONSOLE:
            return DocCommand(where, w, tuple(ws[i + 1 :]), exports)
        if w == "python" and i + 1 < len(ws) and ws[i + 1].startswith("scripts/"):
            return DocCommand(where, ws[i + 1], tuple(ws[i + 2 :]), exports)
    return None


def doc_commands(path: Path, root: Path = ROOT) -> tuple[list[DocCommand], list[str]]:
    """(the project's commands in the doc at ``path``, its code-block shell lines that are not the project's),
    each named by the doc's path relative to ``root`` and its line."""
    text = path.read_text(encoding="utf-8")
    name = path.relative_to(root).as_posix()
    found, others = [], []
    fence = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
    for block in fence.finditer(text):
        lang, body = block.groups()
        if lang not in ("bash", "sh", "shell", "console", ""):
            continue
        first = text.count("\n", 0, block.start(2)) + 1
        exports = tuple(re.findall(r"^export PYTHONPATH=(\S+)", body, re.M))
        for offset, line in shell_lines(body):
            for command in split_commands(line):
                parsed = parse(f"{name}:{first + offset}", command, exports) if is_ours(command) else None
                if parsed:
                    found.append(parsed)
                elif lang and not command.startswith(NOT_OURS):
                    others.append(f"{name}:{first + offset}: {command}")
    prose = fence.sub(lambda m: "\n" * m.group(0).count("\n"), text)  # line numbers kept
    for span in re.finditer(r"`([^`]+)`", prose):
        body = " ".join(span.group(1).split())
        if is_ours(body):
            line = prose.count("\n", 0, span.start()) + 1
            found += [c for c in (parse(f"{name}:{line}", part) for part in split_commands(body)) if c]
    return found, others


def all_commands() -> list[DocCommand]:
    """Every command of every doc, in order."""
    return [c for path in DOCS for c in doc_commands(path)[0]]


# ---- composing a command ----------------------------------------------------------------------------


def wrapped_module(script: str) -> str | None:
    """The captioning.commands module a scripts/ wrapper calls (None for a script of its own)."""
    path = ROOT / script
    found = re.search(r"^from (captioning\.commands\.\w+) import main$", path.read_text(encoding="utf-8"), re.M)
    return found.group(1) if found else None


def is_placeholder(value: str) -> bool:
    """Whether a doc's value stands for one the reader fills in (a path, a run, a number)."""
    return bool(PLACEHOLDER.search(value))


def sample_value(default: Any) -> str:
    """A value of the type of ``default`` to stand for a placeholder (a string for paths and unknowns)."""
    if isinstance(default, bool):
        return "true"
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        return "1"
    if isinstance(default, list) or OmegaConf.is_list(default):
        return "[placeholder]"
    return "placeholder"


def plugin_missing(override: str) -> str | None:
    """Why ``override`` is left out (a plugin the docs use is not installed), else None."""
    for group, (module, why) in PLUGINS.items():
        key = override.lstrip("+~").split("=")[0]
        if key == group or key.startswith(group.replace("/", ".") + "."):
            try:
                importlib.import_module(module)
            except ImportError:
                return why
    return None


def sweep_points(args: list[str]) -> list[list[str]]:
    """A -m command line as single runs: each sweep override's k-th value in the k-th run (the last value
    repeated once a shorter sweep is done): every value of every axis is composed once."""
    if not {"-m", "--multirun"} & set(args):
        return [args]
    axes = []
    for arg in args:
        if arg in ("-m", "--multirun"):
            continue
        values = sweep_values(arg) if "=" in arg and not arg.startswith("-") else None
        key = arg.split("=", 1)[0]
        axes.append([f"{key}={v}" for v in values] if values else [arg])
    runs = max((len(a) for a in axes), default=1)
    return [[a[min(k, len(a) - 1)] for a in axes] for k in range(runs)]


def config_checker(config_path: str, config_name: str) -> Callable[[Any], list[str]]:
    """The function the command runs on its composed config before any work (its ranges and choices)."""
    from captioning.config import config_problems
    from captioning.evaluation.checkpoint import evaluate_problems
    from captioning.lm import config as lm_config
    from captioning.sequence import config as sequence_config
    from captioning.sequence.experiments import SweepConfig
    from captioning.sequence.train import SequenceRunConfig
    from captioning.utils.schema import ConfigError, plain, problems

    def found_by(check: Callable[[type, Any], Any], schema: type) -> Callable[[Any], list[str]]:
        def find(cfg: Any) -> list[str]:
            try:
                check(schema, cfg)
            except ConfigError as exc:
                return exc.problems
            return []
        return find

    by_name = {("", "train"): config_problems, ("", "extract"): config_problems, ("", "probe"): config_problems,
               ("", "evaluate"): evaluate_problems, ("lm", "lm"): found_by(lm_config.check, lm_config.LMRunConfig),
               ("lm", "sample"): found_by(lm_config.check, lm_config.SampleConfig),
               ("lm", "viz"): found_by(lm_config.check, lm_config.VizConfig),
               ("sequence", "sequence"): found_by(sequence_config.check, SequenceRunConfig),
               ("sequence", "long_term_dependency"): found_by(sequence_config.check, SweepConfig)}
    folder = Path(config_path).name if Path(config_path).name != "configs" else ""
    if (folder, config_name) in by_name:
        return by_name[(folder, config_name)]
    schema = schema_of(Path(config_path) / f"{config_name}.yaml")
    return lambda cfg: [p.removeprefix(".") for p in problems(schema, {k: v for k, v in plain(cfg).items()}, "")]


def schema_of(yaml_file: Path) -> type:
    """The dataclass a one-schema command's yaml extends (its ``/schema/run@_here_: NAME`` default)."""
    from hydra.core.config_store import ConfigStore

    name = re.search(r"/schema/run@_here_: (\w+)", yaml_file.read_text(encoding="utf-8")).group(1)
    return OmegaConf.get_type(ConfigStore.instance().load(f"schema/run/{name}.yaml").node)


def hydra_job_config(main: Any, argv: list[str]) -> Any:
    """The config ``main`` composes from ``argv`` (``--cfg job`` through its own machinery), or raise
    AssertionError with the command's one-line error."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(["--cfg", "job", *argv])
        except SystemExit as exit_:  # Hydra's own argument parser
            status = exit_.code
    assert status == 0, f"does not compose: {err.getvalue().strip() or out.getvalue().strip()}"
    return OmegaConf.create(out.getvalue())


def fill_placeholders(module_name: str, argv: list[str]) -> list[str]:
    """``argv`` with each placeholder value replaced by a sample of its key's type in the command's default
    config (a string where the key is not there: a training override of search, a path); keys are kept. A
    placeholder group choice (``model=<name>``) and a placeholder ``--config-dir`` are the reader's own: left out."""
    out = []
    for i, arg in enumerate(argv):
        key, eq, value = arg.partition("=")
        if arg in HYDRA_VALUE_FLAGS and i + 1 < len(argv) and is_placeholder(argv[i + 1]):
            continue
        if i and argv[i - 1] in HYDRA_VALUE_FLAGS:
            if not is_placeholder(arg):
                out.append(arg)
        elif arg.startswith("-") or not eq:
            out.append("placeholder.png" if is_placeholder(arg) else arg)  # a positional image or folder
        elif is_placeholder(value):
            default = OmegaConf.select(default_config(module_name), key.lstrip("+~"), default=None,
                                       throw_on_missing=False)
            if not OmegaConf.is_dict(default):
                out.append(f"{key}={sample_value(default)}")
        else:
            out.append(arg)
    return out


@functools.cache
def default_config(module_name: str) -> Any:
    """The config the command composes with no arguments."""
    return hydra_job_config(importlib.import_module(module_name).main, [])


COMPOSED: dict[tuple[str, tuple[str, ...]], None] = {}  # command lines already checked (many docs repeat one)


def check_hydra_command(module_name: str, argv: list[str]) -> None:
    """Compose ``argv`` as the command of ``module_name`` would, and check every value; a command that trains
    runs composes each run's training config too."""
    module = importlib.import_module(module_name)
    if wants_help(argv):  # the help page, not a config
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert module.main(argv) == 0 and out.getvalue().strip()
        return
    for args in sweep_points(fill_placeholders(module_name, [a for a in argv if not plugin_missing(a)])):
        if (module_name, tuple(args)) in COMPOSED:
            continue
        cfg = hydra_job_config(module.main, args)
        found = config_checker(module.CONFIG_PATH, module.CONFIG_NAME)(cfg)
        found = [p for p in found if "is required" not in p]  # a required value elided in prose (`a=<runs>`)
        assert not found, f"values outside the declared options: {found}"
        if "overrides" in cfg and "rows" in cfg:  # search / make_results: the training runs' configs
            grid = cfg.get("grid") or {}
            rows = list((cfg.rows or {"default": []}).values())
            for k in range(max((len(v) for v in grid.values()), default=1)):
                common = list(cfg.overrides) + [f"{key}={vals[min(k, len(vals) - 1)]}" for key, vals in grid.items()]
                for row in rows if k == 0 else rows[:1]:  # every row once, every grid value once
                    check_hydra_command("captioning.commands.train", common + list(row))
        COMPOSED[(module_name, tuple(args))] = None


class Parsed(Exception):
    """Raised by argparse once a script's arguments parsed: the script stops before any work."""


def check_script(script: str, argv: list[str], monkeypatch) -> None:
    """Run a script of its own in-process, stopped once its arguments parsed (argparse) or composed (Hydra:
    ``--cfg job``, then its values checked)."""
    path = ROOT / script
    source = path.read_text(encoding="utf-8")
    argv = ["placeholder" if is_placeholder(a) and not a.startswith("-") else a for a in argv]
    hydra_app = re.search(r'@hydra\.main\(config_path="([^"]+)", config_name="([^"]+)"', source)
    out, err = io.StringIO(), io.StringIO()
    with monkeypatch.context() as patched, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        patched.setattr(sys, "argv", [str(path), *(["--cfg", "job"] if hydra_app else []), *argv])
        if not hydra_app:
            patched.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
        try:
            runpy.run_path(str(path), run_name="__main__")
            status = 0 if hydra_app else "ran past its argument parsing"
        except SystemExit as exit_:
            status = exit_.code or 0
        except Parsed:
            status = 0
    # a placeholder where a choice goes (`--only SECTION`, `benchmark.py NAME`) leaves the choice to the reader
    chosen_by_reader = "'placeholder'" in err.getvalue() + str(status)
    assert status == 0 or chosen_by_reader, f"does not parse: {err.getvalue().strip() or status}"
    if hydra_app:
        found = config_checker(str((path.parent / hydra_app.group(1)).resolve()), hydra_app.group(2))(
            OmegaConf.create(out.getvalue()))
        assert not found, f"values outside the declared options: {found}"
    if script == "scripts/benchmark.py" and argv and argv[0] == "loop":
        trained = [a for a in argv[1:] if "=" in a and not a.startswith("-")]  # loop's training overrides
        if trained:
            check_hydra_command("captioning.commands.train", trained)


ORIGINAL_PARSE_ARGS = argparse.ArgumentParser.parse_args


def parse_then_stop(self: argparse.ArgumentParser, args: Any = None, namespace: Any = None) -> Any:
    """argparse's parse_args, then Parsed: the script stops before any work."""
    ORIGINAL_PARSE_ARGS(self, args, namespace)
    raise Parsed


def forget_modules_under(folders: list[Path]) -> None:
    """Drop modules imported from ``folders`` (a doc's PYTHONPATH exports) from sys.modules, so that other tests
    in this process see them as unimportable again, as they are without that path."""
    for name, module in list(sys.modules.items()):
        origin = getattr(module, "__file__", None) or ""
        if any(origin.startswith(str(folder) + "/") for folder in folders):
            del sys.modules[name]


def check(command: DocCommand, monkeypatch) -> None:
    """The whole check of one doc command (AssertionError naming what is wrong)."""
    monkeypatch.chdir(ROOT)  # the docs' relative paths (--config-dir examples/...) start at the checkout
    for folder in command.exports:
        monkeypatch.syspath_prepend(str(ROOT / folder))
    try:
        check_command(command, monkeypatch)
    finally:
        forget_modules_under([ROOT / folder for folder in command.exports])


def check_command(command: DocCommand, monkeypatch) -> None:
    """check's body, with the doc's PYTHONPATH in place."""
    args = [a for a in command.args if a != "..."]
    if command.program in CONSOLE:
        check_hydra_command(CONSOLE[command.program].split(":")[0], args)
        return
    script = command.program
    assert (ROOT / script).is_file(), f"no such script: {script}"
    module = wrapped_module(script)
    assert module is None, f"spell it {next(k for k, v in CONSOLE.items() if v.startswith(module + ':'))}"
    assert Path(script).name in SCRIPTS_ONLY, f"{script}: a script with no console command not in SCRIPTS_ONLY"
    check_script(script, args, monkeypatch)


COMMANDS = all_commands()


def test_the_docs_have_commands():
    assert len(COMMANDS) > 50 and {c.where.split(":")[0] for c in COMMANDS} >= {"README.md", "docs/results.md"}


@pytest.mark.parametrize("command", COMMANDS, ids=[c.where for c in COMMANDS])
def test_doc_command_composes(command, monkeypatch):
    check(command, monkeypatch)


def test_every_shell_line_of_the_docs_is_checked_or_not_ours():
    others = [line for path in DOCS for line in doc_commands(path)[1]]
    assert not others, f"shell lines that run none of the project's commands: {others}"


@pytest.mark.parametrize("bad", [
    "captioning-train cell=transformer", "captioning-train no_such_key=1", "captioning-train model.hidden_size=-1",
    "captioning-train -m cell=rnn,elman", "captioning-caption x.png colour=blue",
    "captioning-caption x.png show_beams=2",
    "captioning-caption x.png decoding.colour=blue", "captioning-prepare-data coco2099", "captioning-paired --a x",
    "captioning-make-results row=x cell=elman", "captioning-search seeds=2 model.dropout=0.1,7 row=a",
    "captioning-compare-runs runs/x --no-such-flag", "captioning-evaluate decoding.beam_size=0",
    "python scripts/train.py", "python scripts/no_such_script.py", "python scripts/benchmark.py loop --no-such-flag",
    "python scripts/benchmark.py --only no_such_section", "python scripts/render_notebook.py --checkpint x",
    "python scripts/long_term_dependency.py no_such_key=1",
])
def test_the_check_catches_a_bad_command(bad, monkeypatch):
    command = parse("bad", bad)
    with pytest.raises(AssertionError):
        check(command, monkeypatch)


def test_placeholders_are_values_and_keys_are_still_checked(monkeypatch):
    for good in ("captioning-train resume=runs/DATE/TIME", "captioning-evaluate checkpoint=<run dir> split=test",
                 "captioning-train seed=K", "captioning-paired a=<runs of A> b=<runs of B> splits=[val]"):
        check(parse("good", good), monkeypatch)
    with pytest.raises(AssertionError):
        check(parse("bad", "captioning-train resum=runs/DATE/TIME"), monkeypatch)


def test_commands_are_found_in_blocks_and_spans_across_lines(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("Run `captioning-train\ncell=gru` or\n\n```bash\nX=1 captioning-evaluate \\\n  split=val  # c\n"
                   "pip install x && captioning-caption a.png\n```\n", encoding="utf-8")
    found = [(c.where, c.program, c.args) for c in doc_commands(doc, tmp_path)[0]]
    assert found == [("doc.md:5", "captioning-evaluate", ("split=val",)),
                     ("doc.md:7", "captioning-caption", ("a.png",)),
                     ("doc.md:1", "captioning-train", ("cell=gru",))]
