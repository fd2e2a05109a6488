"""The analysis tools' code: `run(backbone, cfg) -> dict` per tool (the commands are `analysis.<tool>`)."""
