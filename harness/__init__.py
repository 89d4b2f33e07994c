"""rankbench's harness: datasets, evaluation, caching, results, reports and checks.

Importing this package is cheap and has no side effects: it loads neither torch, onnxruntime
nor ir_datasets (a test keeps it so). Rankers live in the sibling package ``rankers``.
"""

__version__ = "0.1.0"

# Bump when a change in the harness changes what a cached run means (evaluation conventions,
# run post-processing, fingerprint layout). Part of every cell fingerprint.
CODE_VERSION = 1
