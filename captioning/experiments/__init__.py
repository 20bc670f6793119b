"""The research tooling, a layer above training: runs many training jobs and reports on them.

``results`` trains the final rows at several seeds on the sealed test splits and writes the results
section of docs/results.md; ``search`` chooses settings on val over a grid; ``compare`` puts the runs of a
sweep side by side and pairs the runs of two models image by image (bootstrap intervals); ``model_table``
lays several models' runs side by side. Orchestration (composing the runs, training them, reading finished
ones) stays apart from report writing (the markdown tables and prose, rendered from the saved runs alone).
"""
