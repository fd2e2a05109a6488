"""The robustness tests' code: `run(classifier, cfg, info) -> dict` per test.

The commands are `python -m analysis.robustness.<test>` (thin shells one folder up).
"""
