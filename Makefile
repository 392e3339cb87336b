# Two commands set everything up on a fresh machine with Python 3.11+ and make:
#   make demo   - create .venv, install dmf, generate matrices, take an NMF and an SVD on a local cluster
#   make test   - create .venv, install dmf with its test extras, run pytest
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' && { echo $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
DEMO_DIR ?= demo-output
BENCH_DIR ?= bench-data

.PHONY: demo test bench lint clean help

help:
	@echo "make demo   generate matrices, take an NMF and an SVD on a local cluster"
	@echo "make test   run the test suite"
	@echo "make bench  run the benchmarks (long; prints ratio tables)"
	@echo "make lint   ruff"

$(BIN)/python:
	@test -n "$(PYTHON)" || { echo "Python 3.11 or newer is needed"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall when pyproject.toml changes.
$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	@touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@ $(VENV)/.installed-run

demo: $(VENV)/.installed-run
	$(BIN)/dmf generate lowrank $(DEMO_DIR)/X.zarr --shape 100000x300 --rank 10 \
		--decay 0.8 --noise 0.01 --seed 0 --dtype float32 --overwrite
	$(BIN)/dmf info $(DEMO_DIR)/X.zarr
	$(BIN)/dmf svd $(DEMO_DIR)/X.zarr $(DEMO_DIR)/svd.zarr -k 5 --no-resume
	$(BIN)/dmf info $(DEMO_DIR)/svd.zarr
	$(BIN)/dmf generate lowrank $(DEMO_DIR)/N.zarr --shape 100000x300 --rank 10 \
		--nonnegative --seed 1 --dtype float32 --overwrite
	$(BIN)/dmf nmf $(DEMO_DIR)/N.zarr $(DEMO_DIR)/nmf.zarr -k 10 --max-iter 300 --tol 3e-4 \
		--no-resume
	$(BIN)/dmf info $(DEMO_DIR)/nmf.zarr
	@echo
	@echo "matrix:          $(DEMO_DIR)/X.zarr (planted factors: $(DEMO_DIR)/X.factors.zarr)"
	@echo "SVD (U, S, Vt):  $(DEMO_DIR)/svd.zarr   - compare its singular values with"
	@echo "                 the true ones printed by 'dmf info $(DEMO_DIR)/X.zarr'"
	@echo "non-negative:    $(DEMO_DIR)/N.zarr (planted factors: $(DEMO_DIR)/N.factors.zarr)"
	@echo "NMF (W, H):      $(DEMO_DIR)/nmf.zarr  - dmf.load('$(DEMO_DIR)/nmf.zarr').W"

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -n auto --maxprocesses=4 --dist loadfile

bench: $(VENV)/.installed-test
	$(BIN)/python -m pip install --quiet -e '.[compare]' || \
		echo "implicit / scikit-surprise did not install: their rows are skipped"
	$(BIN)/python -m benchmarks --data $(BENCH_DIR) all

lint: $(VENV)/.installed-test
	$(BIN)/ruff check dmf tests benchmarks

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache
