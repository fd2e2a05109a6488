"""`python -m report run_dir=DIR [output_dir=DIR/report] key=value ...`: write report.md and report.html."""

import logging
import sys

from plumbing import parse_config, run_command

from .config import ReportConfig

PROG = "report"


def main(argv: list[str] | None = None) -> int:
    """Parse, check, write the report and print its paths; a user error is one line and exit 2."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    def work() -> int:
        cfg = parse_config(ReportConfig, argv, PROG)
        cfg.check()
        paths = _run(cfg)
        print(f"{PROG}: {paths['evaluations']} evaluations, {paths['other']} other results, {paths['figures']} figures")
        print(f"{PROG}: markdown written to {paths['markdown']}")
        print(f"{PROG}: report written to {paths['html']}")
        return 0

    return run_command(PROG, work)


def _run(cfg: ReportConfig) -> dict:
    from .work import run  # the work reads every result folder: only after the config parsed

    return run(cfg)


if __name__ == "__main__":
    sys.exit(main())
