# mfvsdnn — every target creates .venv on first use; nothing needs installing by hand.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DATA   ?= data/sample.csv
REPORT_DIR ?= reports
# the shipped sample's user features; for your own file: make compare DATA=x.csv FEATURES="--user-features a,b"
ifeq ($(DATA),data/sample.csv)
FEATURES ?= --user-features country,age_band
endif
ARGS ?=

.PHONY: install test demo compare sweep scale lint bench clean report-check

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,spark,ann]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

demo: $(STAMP)
	$(BIN)/mfvsdnn compare $(DATA) $(FEATURES) --report-dir $(REPORT_DIR) $(ARGS)

compare: $(STAMP)
	$(BIN)/mfvsdnn compare $(DATA) $(FEATURES) --report-dir $(REPORT_DIR) $(ARGS)

sweep: $(STAMP)
	$(BIN)/mfvsdnn sweep $(DATA) $(FEATURES) --report-dir $(REPORT_DIR)/sweep $(ARGS)

scale: $(STAMP)
	$(BIN)/mfvsdnn scale --report-dir $(REPORT_DIR)/scale $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check mfvsdnn tests benchmarks scripts

# tiny compare, sweep and scale reports rendered in headless Chromium at 1400 px: PNGs in reports/check,
# exit 1 on console errors, missing images, overflowing elements or literal backticks (skipped without Chromium)
report-check: $(STAMP)
	$(BIN)/python scripts/report_check.py --build --out $(REPORT_DIR)/check

# the four kernel benchmarks, each printing its ratios against floors and peers measured in the same
# run and writing its performance-table row to $(BENCH_DIR); then the README's table, stamped with the
# date and the CPU, is printed and saved as $(BENCH_DIR)/performance.md
BENCH_DIR ?= $(REPORT_DIR)/bench
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	mkdir -p $(BENCH_DIR)
	$(BIN)/python benchmarks/bench_wals.py --summary $(BENCH_DIR)/wals.json
	$(BIN)/python benchmarks/bench_softmax.py --summary $(BENCH_DIR)/softmax.json
	$(BIN)/python benchmarks/bench_eval.py --summary $(BENCH_DIR)/eval.json
	$(BIN)/python benchmarks/bench_ann.py --summary $(BENCH_DIR)/ann.json
	$(BIN)/python scripts/perf_table.py $(BENCH_DIR) | tee $(BENCH_DIR)/performance.md

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache reports runs

# The lower bounds of pyproject.toml, pinned in a separate venv (created on first use), running the
# loader tests (OLDEST_TESTS= runs the whole suite).
OLDEST ?= /tmp/mfvsdnn-oldest
OLDEST_PINS := numpy==1.26.0 pandas==2.1.0 scipy==1.11.1 numba==0.59.0 pyarrow==10.0.1 matplotlib==3.8.0 \
	typer==0.16.0 rich==13.0.0 threadpoolctl==3.1.0 hypothesis==6.100.0 pytest==8.0.0
OLDEST_TESTS ?= tests/test_data.py tests/test_loader_*.py
.PHONY: test-oldest
test-oldest:
	test -x $(OLDEST)/bin/python || $(PYTHON) -m venv $(OLDEST)
	$(OLDEST)/bin/python -m pip install --quiet $(OLDEST_PINS) -e '.[dev]'
	$(OLDEST)/bin/python -m pytest -q -p no:cacheprovider $(OLDEST_TESTS)
