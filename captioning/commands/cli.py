"""What every command shares: one error boundary, one Hydra runner and a ``--help`` that imports nothing heavy.

The error boundary (``run_guarded``): a user's mistake ends the command with one line on stderr,
``error: <the problem and the fix>``, and exit status 2; any other exception is a bug and keeps its
traceback. A user's mistake is an exception of one of the classes named in ``USER_ERRORS`` (a missing,
truncated or untrusted checkpoint, a bad config value, missing or malformed data, annotation or results
files, bad images, encoder weights that cannot be had, a Hydra override that does not compose), or a
``UserError`` raised by a command itself. ``HYDRA_FULL_ERROR=1`` shows the traceback of those too.

``hydra_command`` turns a task function ``task(cfg) -> int | None`` into the command's ``main(argv)``:
``--help`` prints the command's help page (captioning/commands/help/<command>.txt, written from the
declared option docs by ``python -m captioning.commands.write_help``) before anything heavy is imported;
otherwise the schemas are registered, Hydra composes the config and runs the task inside the boundary.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

HELP_DIR = Path(__file__).resolve().parent / "help"
HELP_FLAGS = ("-h", "--help")
# Hydra's flags that take the next word as their value (that word is not a positional argument)
HYDRA_VALUE_FLAGS = {"-cp", "--config-path", "-cn", "--config-name", "-cd", "--config-dir", "-c", "--cfg",
                     "-p", "--package", "--experimental-rerun"}
HYDRA_FLAGS = HYDRA_VALUE_FLAGS | {"-m", "--multirun", "-i", "--info", "--resolve", "-r", "--run", "-sc",
                                   "--shell-completion", "--hydra-help", "--version", *HELP_FLAGS}
INFO_TOPICS = {"all", "config", "defaults", "defaults-tree", "plugins", "searchpath"}  # of --info
# options whose value is prose (a section's title): passed to Hydra quoted, so commas and brackets stay text
FREE_TEXT = {"title"}
# set with HYDRA_FULL_ERROR by the boundary itself (not by the user): processes it starts still give one line
SET_BY_BOUNDARY = "CAPTIONING_BOUNDARY_FULL_ERROR"

# The user's mistakes, as "module:Class": looked up among the modules already imported, so the boundary
# imports nothing (an exception of a class can only exist once its module is imported).
USER_ERRORS = (
    "captioning.commands.cli:UserError",
    "captioning.models.checkpoint:CheckpointError",      # missing, truncated, untrusted, mismatched
    "captioning.utils.schema:ConfigError",               # a value outside its range or choices
    "captioning.data.datasets:DataConfigError",
    "captioning.data.coco:DataError",                    # missing or malformed annotation files, missing images
    "captioning.data.images:BadImageError",
    "captioning.features.cache:BadImagesError",
    "captioning.features.encoder:EncoderWeightsUnavailable",
    "captioning.features.shards:ShardsIncomplete",
    "captioning.data.download:DownloadError",
    "captioning.evaluation.metrics:MetricUnavailable",
    "captioning.training.loop:TrainingDiverged",
    "captioning.text.vocab:VocabularyError",
    "captioning.lm.model:LMCheckpointError",
    "hydra.errors:ConfigCompositionException",           # an override that does not fit the declared options
    "hydra.errors:OverrideParseException",
    "hydra.errors:MissingConfigException",
    "hydra.errors:SearchPathException",
    "captioning.utils.files:FileFormatError",             # a user's json file that is not json
    "json:JSONDecodeError",
    "builtins:FileNotFoundError",
    "builtins:NotADirectoryError",
    "builtins:IsADirectoryError",
    "builtins:PermissionError",
)


class UserError(Exception):
    """A mistake the user can fix; the message names the problem and the fix."""


class Abort(BaseException):
    """Carries a user's mistake out of a Hydra task: Hydra handles only Exception, so it neither logs nor
    prints this one, and the boundary prints its one line."""


def full_traceback_wanted() -> bool:
    """Whether the user asked for every traceback (``HYDRA_FULL_ERROR=1`` set outside the boundary)."""
    return os.environ.get("HYDRA_FULL_ERROR") == "1" and os.environ.get(SET_BY_BOUNDARY) != "1"


def user_error_classes() -> tuple[type, ...]:
    """The classes of ``USER_ERRORS`` whose modules are imported (only those can have been raised)."""
    found = []
    for spec in USER_ERRORS:
        module, name = spec.split(":")
        cls = getattr(sys.modules.get(module), name, None)
        if isinstance(cls, type):
            found.append(cls)
    return tuple(found)


def is_user_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a user's mistake (``USER_ERRORS``) rather than a bug."""
    return isinstance(exc, Exception) and isinstance(exc, user_error_classes())


def one_line(exc: BaseException) -> str:
    """``exc``'s message as one line: a multi-line list joined with '; ', Hydra's cause appended."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror.lower()}; check the path"
    text = str(exc)
    if type(exc).__name__ == "JSONDecodeError":
        text = f"a json file is not valid json ({text}); fix or regenerate it"
    cause = exc.__cause__
    if type(exc).__module__.startswith("hydra") and cause is not None and str(cause) not in text:
        text = f"{text}: {cause}"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    out = lines[0]
    for line in lines[1:]:  # "invalid config:" then one problem a line -> "invalid config: a; b"
        out += " " + line if out.endswith((":", ".")) else "; " + line
    return out


def run_guarded(func: Callable[[], Any]) -> int:
    """Run ``func`` inside the error boundary: its int result is the exit status (None: 0); a user's
    mistake prints one line and gives 2; a bug propagates with its traceback."""
    user_full = full_traceback_wanted()
    saved = {k: os.environ.get(k) for k in ("HYDRA_FULL_ERROR", SET_BY_BOUNDARY)}
    if not user_full:  # Hydra then re-raises the task's exceptions instead of printing them: they come here
        os.environ.update({"HYDRA_FULL_ERROR": "1", SET_BY_BOUNDARY: "1"})
    try:
        status = func()
    except Abort as abort:
        print(f"error: {one_line(abort.args[0])}", file=sys.stderr)
        return 2
    except Exception as exc:
        if user_full or not is_user_error(exc):
            raise
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return status if isinstance(status, int) and not isinstance(status, bool) else 0


def quoted(value: str) -> str:
    """``value`` as a single-quoted Hydra override value (any path, spaces and quotes included)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def split_positional(argv: list[str]) -> tuple[list[str], list[str]]:
    """(Hydra's arguments, the positional ones): a positional argument is neither a flag (nor a flag's
    value) nor key=value, or it is an existing file or folder whose name holds '='."""
    out, positional, i = [], [], 0
    while i < len(argv):
        arg = argv[i]
        if arg in HYDRA_VALUE_FLAGS or (arg in ("-i", "--info") and i + 1 < len(argv) and argv[i + 1] in INFO_TOPICS):
            out += argv[i : i + 2]
            i += 2
            continue
        if arg.startswith("-") or ("=" in arg and not Path(arg).exists()):
            out.append(arg)
        else:
            positional.append(arg)
        i += 1
    return out, positional


def positional_to(argv: list[str], key: str, many: bool = True) -> list[str]:
    """Hydra's command line with the positional arguments as one ``key=[...]`` override (``key=VALUE``
    when not ``many``; more than one is then a UserError)."""
    out, positional = split_positional(argv)
    if not many and len(positional) > 1:
        raise UserError(f"one {key} at a time, got {len(positional)}: {' '.join(positional)}")
    if positional:
        out.append(f"{key}=[{','.join(map(quoted, positional))}]" if many else f"{key}={quoted(positional[0])}")
    return out


def reject_flags(argv: list[str], renamed: dict[str, str], command: str) -> None:
    """A UserError for the first flag that is not Hydra's, naming its key=value spelling when ``renamed``
    knows it (a value with '=' is the whole new spelling, e.g. ``--json`` -> ``json=true``)."""
    for i, arg in enumerate(argv):
        flag, eq, inline = arg.partition("=")
        if not arg.startswith("-") or arg in HYDRA_FLAGS or (i and argv[i - 1] in HYDRA_VALUE_FLAGS):
            continue
        new = renamed.get(flag)
        if flag == "--row" and new:
            label = argv[i + 1] if i + 1 < len(argv) else "lstm"
            raise UserError(f"--row LABEL ... is now row=LABEL ... (e.g. row={label} cell=lstm); see {command} --help")
        if new is None:
            raise UserError(f"{command} takes key=value options, not {flag}; see {command} --help")
        if "=" in new or " " in new:
            raise UserError(f"{flag} is now {new}; see {command} --help")
        value = inline if eq else (argv[i + 1] if i + 1 < len(argv) and not argv[i + 1].startswith("-") else "...")
        raise UserError(f"{flag} is now {new}= (e.g. {new}={value}); see {command} --help")


def sweep_values(override: str) -> list[str] | None:
    """The values of a sweep override ``key=a,b`` (Hydra's grammar: ``key=[a,b]`` is one list value), else None."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides([override])[0]
    return list(parsed.sweep_string_iterator()) if parsed.is_sweep_override() else None


def runs_argv(argv: list[str], own: set[str], renamed: dict[str, str], command: str,
              grid: bool = False) -> list[str]:
    """Hydra's command line of a command that trains many runs (make_results, search): its own options
    (``own``) as they are; every other key=value is a training override, for every run before the first
    ``row=LABEL`` and for that row after it (``overrides=[...]``, ``rows={LABEL: [...]}``); with ``grid``, a
    common override with several values (``key=v1,v2``) is an axis of the grid (``grid={key: [...]}``)."""
    reject_flags(argv, renamed, command)
    out, common, rows, axes, row = [], [], {}, {}, None
    flags, positional = split_positional(argv)
    if positional:
        raise UserError(f"{command} takes key=value arguments; not {positional[0]!r} (a row is row=LABEL)")
    for arg in flags:
        key, eq, value = arg.partition("=")
        if eq and key.lstrip("+~") in FREE_TEXT & own and not value.startswith(("'", '"')):
            out.append(f"{key}={quoted(value)}")
        elif not eq or arg.startswith("-") or key.lstrip("+~") in own:
            out.append(arg)
        elif key == "row":
            row = rows.setdefault(value, [])
        elif row is not None:
            if grid and sweep_values(arg) is not None:
                raise UserError(f"{arg}: a grid axis (key=v1,v2) goes before the first row=; every row is searched "
                                f"over the whole grid")
            row.append(arg)
        elif grid and sweep_values(arg) is not None:
            axes[key] = sweep_values(arg)
        else:
            common.append(arg)
    if common:
        out.append(f"overrides=[{','.join(map(quoted, common))}]")
    if rows:
        out.append("++rows={" + ",".join(f"{k}:[{','.join(map(quoted, v))}]" for k, v in rows.items()) + "}")
    if axes:
        out.append("++grid={" + ",".join(f"{k}:[{','.join(map(quoted, v))}]" for k, v in axes.items()) + "}")
    return out


def check_run_config(schema: type, cfg: Any, required: Sequence[str] = ()) -> None:
    """Raise ConfigError listing every value of ``cfg`` outside the range or choices ``schema`` declares
    and every ``required`` option left empty (for the commands whose options are one schema)."""
    from captioning.utils.schema import ConfigError, problems

    found = [p.removeprefix(".") for p in problems(schema, cfg, "")]
    if "checkpoint" in cfg and not cfg.checkpoint:
        found.append("checkpoint=<run dir or .pt file> is required")
    found += [f"{key}=... is required (see --help)" for key in required if key != "checkpoint" and not cfg.get(key)]
    if found:
        raise ConfigError("invalid config:\n  " + "\n  ".join(found))


def command_options(schema: type, cfg: Any, required: Sequence[str] = ()) -> Any:
    """The typed options of a one-schema command (caption, render_examples, ...): ConfigError naming every
    bad value (and every ``required`` option left empty) at once, before anything is loaded."""
    from captioning.utils.schema import build

    check_run_config(schema, cfg, required)
    return build(schema, cfg)


def wants_help(argv: list[str]) -> bool:
    """Whether the command line asks for the command's help page."""
    return any(arg in HELP_FLAGS for arg in argv)


def help_page(name: str) -> str:
    """The help page written for command ``name`` (captioning/commands/write_help.py)."""
    return (HELP_DIR / f"{name}.txt").read_text(encoding="utf-8")


@dataclass
class HydraCommand:
    """A Hydra command: its name, top-level config, the function that registers its schemas and its task."""

    name: str
    config_path: str
    config_name: str
    register: Callable[[], Any]
    task: Callable[[Any], Any]
    rewrite: Callable[[list[str]], list[str]] | None = None  # the command's own argv -> Hydra's (caption's images)
    epilog: Callable[[], str] | None = None  # more text for the help page (e.g. the datasets one can download)

    def __call__(self, argv: list[str] | None = None) -> int:
        """The command: ``argv`` (default: the process's arguments) -> exit status."""
        argv = sys.argv[1:] if argv is None else list(argv)
        if wants_help(argv):
            print(help_page(self.name), end="")
            return 0
        return run_guarded(lambda: self.run_hydra(argv))

    def run_hydra(self, argv: list[str]) -> int:
        """Compose the config from ``argv`` with Hydra and run the task; the task's int is the status."""
        import hydra

        args = self.rewrite(argv) if self.rewrite else argv
        self.register()
        status: list[Any] = [0]

        def task(cfg: Any) -> None:
            from hydra.core.global_hydra import GlobalHydra
            from hydra.initialize import get_gh_backup, restore_gh_from_backup

            backup = get_gh_backup()
            GlobalHydra.instance().clear()  # the task may compose other configs (e.g. each training run's)
            try:
                status[0] = self.task(cfg)
            except Exception as exc:
                if is_user_error(exc) and not full_traceback_wanted():
                    raise Abort(exc) from exc
                raise
            finally:
                restore_gh_from_backup(backup)

        task.__module__ = self.task.__module__  # Hydra names the job after the task's module
        task.__name__ = self.task.__name__
        app = hydra.main(config_path=self.config_path, config_name=self.config_name, version_base="1.3")(task)
        saved = sys.argv
        sys.argv = [saved[0] if saved else self.name, *args]
        try:
            app()
        finally:
            sys.argv = saved
        return status[0] if isinstance(status[0], int) and not isinstance(status[0], bool) else 0


def hydra_command(name: str, config_path: str | os.PathLike, config_name: str, register: Callable[[], Any],
                  task: Callable[[Any], Any], rewrite: Callable[[list[str]], list[str]] | None = None,
                  epilog: Callable[[], str] | None = None) -> HydraCommand:
    """The ``main`` of a Hydra command (see the module docstring)."""
    return HydraCommand(name, str(config_path), config_name, register, task, rewrite, epilog)
