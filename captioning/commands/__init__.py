"""The command-line entry points, one module per command, each with a ``main`` (pyproject's
``[project.scripts]``: ``captioning-train`` -> ``captioning.commands.train:main``, ...). scripts/*.py are
thin wrappers around the same functions, so `python scripts/train.py` and `captioning-train` are one
command. The Hydra commands read the configs shipped in the package (``captioning.CONFIG_DIR``,
captioning/configs/); each names its own as ``CONFIG_PATH`` and ``CONFIG_NAME``, and ``--config-dir DIR``
adds a folder of the user's own configs in front of them.
"""
