PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: test lint demo demo-full report bench

$(BIN)/activate: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[dev]'
	touch $(BIN)/activate

test: $(BIN)/activate
	$(BIN)/python -m pytest

lint: $(BIN)/activate
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The demo: world, 7 minutes of live pre-training, every evaluation on the live, reference and random-init
# models, the closing table (demo_out/summary.json) and the report (demo_out/report/report.html). <= 15 min
# on 2 CPU cores. `make demo ARGS="output_dir=demo_out minutes=3 stages=frozen,report"` passes options to
# python -m demo.
demo: $(BIN)/activate
	$(BIN)/python -m demo $(ARGS)

# The same with longer fine-tuning, detection and segmentation runs (about 40 minutes more on 2 CPU cores).
demo-full: $(BIN)/activate
	$(BIN)/python -m demo full=true $(ARGS)

# The report of any run folder: make report RUN=demo_out (writes RUN/report/report.md and report.html).
report: $(BIN)/activate
	@test -n "$(RUN)" || { echo "make report: give RUN=DIR (a run folder, e.g. RUN=demo_out)" >&2; exit 2; }
	$(BIN)/python -m report run_dir=$(RUN)
