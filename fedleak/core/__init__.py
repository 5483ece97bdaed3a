"""The kernel every layer builds on: config records, registries, errors, the captured update.

Nothing here imports another part of fedleak, Flower or a dataset library.
"""
