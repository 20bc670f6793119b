"""Caption models: the contract and registry (base.py), checkpoints, and one file per model.

Importing this package registers the shipped models, so a checkpoint names its model by registry name.
"""

from captioning.models import show_attend_tell, show_tell, transformer  # noqa: F401 (registers the models)
