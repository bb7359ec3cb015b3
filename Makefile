# mfvsdnn — every target creates .venv on first use; nothing needs installing by hand.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DATA   ?= data/sample.csv
REPORT_DIR ?= reports

.PHONY: install test demo compare sweep scale lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,spark]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

demo: $(STAMP)
	$(BIN)/mfvsdnn compare $(DATA) --report-dir $(REPORT_DIR) --user-features country,age_band

compare: $(STAMP)
	$(BIN)/mfvsdnn compare $(DATA) --report-dir $(REPORT_DIR)

sweep: $(STAMP)
	$(BIN)/mfvsdnn sweep $(DATA) --report-dir $(REPORT_DIR)/sweep

scale: $(STAMP)
	$(BIN)/mfvsdnn scale --report-dir $(REPORT_DIR)/scale

lint: $(STAMP)
	$(BIN)/ruff check mfvsdnn tests benchmarks

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/bench_wals.py
	$(BIN)/python benchmarks/bench_softmax.py
	$(BIN)/python benchmarks/bench_eval.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache reports runs
