"""The research tooling, a layer above training: runs many training jobs and reports on them.

``results`` trains the final rows at several seeds on the sealed test splits and writes the results
section of docs/results.md; ``search`` chooses settings on val over a grid. Each keeps the orchestration
(composing the runs, training them, reading finished ones) apart from the report writing (the markdown
tables and prose, rendered from the saved runs alone).
"""
