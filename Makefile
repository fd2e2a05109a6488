PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
CHROMIUM ?= /usr/bin/chromium
CHROMEDRIVER ?= /usr/bin/chromedriver

.PHONY: test lint demo demo-full report bench browser benchmark

$(BIN)/activate: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[dev]'
	touch $(BIN)/activate

# The browser test (tests/test_explore_browser.py) drives Debian's chromium through Debian's chromedriver; a fresh
# machine gets both here (root or sudo). Where they cannot be installed, make goes on and that test fails saying so.
browser:
	@if [ ! -x $(CHROMIUM) ] || [ ! -x $(CHROMEDRIVER) ]; then \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  { $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends chromium chromium-driver; } \
	  || echo "make browser: could not install chromium chromium-driver (apt-get); the browser test will fail" >&2; \
	fi

test: $(BIN)/activate browser
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

# The benchmark on the embedded world: the shipped reference checkpoint through every task the world has data for
# (small settings, CPU), then the report: bench_out/benchmark/<task>/, bench_out/benchmark/report/report.html.
# `make benchmark ARGS="dry_run=true"` prints the plan only. Real data: python -m benchmark pretrained=FILE data_root=DIR
benchmark: $(BIN)/activate
	$(BIN)/python -m demo_world output_dir=bench_out/world silhouette=true photo_fraction=0.0 grayscale=true \
		n_train=100 n_val=25 coco_n_train=40 coco_n_val=10 ade_n_train=40 ade_n_val=10 retrieval=true video=true \
		progress=false
	$(BIN)/python -m benchmark pretrained=demo/reference/vit_tiny_silhouette.pth data_root=bench_out/world \
		output_dir=bench_out/benchmark small=true $(ARGS)
