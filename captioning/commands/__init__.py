"""The command-line entry points, one module per command, each with a ``main`` (pyproject's
``[project.scripts]``: ``captioning-train`` -> ``captioning.commands.train:main``, ...; without the console
scripts, ``python -m captioning.commands.train`` is the same command). Every
command is a Hydra app taking ``key=value`` options (captioning/commands/cli.py): each names its config
as ``CONFIG_PATH`` and ``CONFIG_NAME`` (the training commands' in captioning/configs/, the research tools' in
captioning/configs/tools/), ``--config-dir DIR`` adds a folder of the user's own configs in front of them,
``--help`` prints the page captioning/commands/help/<command>.txt (written from the declared option docs by
``python -m captioning.commands.write_help``) without importing torch, and a user's mistake ends the command
with one line on stderr and exit status 2.
"""
