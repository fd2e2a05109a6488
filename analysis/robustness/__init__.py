"""Robustness suite (reference §3.8): occlusion, patch shuffle, common corruptions, backgrounds
challenge, natural adversarial examples and part-wise linear probing.

Each test is `run_<test>(classifier, cfg[, info]) -> dict` (in `analysis/robustness/<test>_work.py`,
drawing its plot into `output_dir`) plus `python -m analysis.robustness.<test> classifier=FILE
[pretrained=FILE] key=value` (`<test>.py`), which also writes config.yaml and results.json; classifiers
are read by `evalkit.load_classifier`. The public names (the `run_<test>` functions, their configs and
the class-map helpers) are exported by `analysis`, the package's one door.
"""
