# Two commands set everything up on a fresh machine with Python 3.11+ and make:
#   make demo   - create .venv, install dmf, run pipelines/demo.yaml (generate, SVD, NMF, report)
#                 with Dask, in this process (its matrices are small)
#   make test   - create .venv, install dmf with its test extras, run pytest
# The first Python 3.11+ that runs: a name can exist and still fail (a pyenv shim
# of a version not selected prints "command not found"), so each is tried silently.
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	$$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 && { echo $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
DEMO_DIR ?= demo-output
BENCH_DIR ?= bench-data

.PHONY: demo digits test test-slow chaos bench bench-big lint layers clean help

help:
	@echo "make demo   run pipelines/demo.yaml: generate, SVD, NMF, report (in process: small matrices)"
	@echo "make digits NMF parts versus SVD components of the digits, as a PNG"
	@echo "make test   run the test suite"
	@echo "make test-slow  scikit-learn's NMF test file against dmf (minutes)"
	@echo "make chaos  run the reliability tests: kills, damaged bytes, locks, hostile input"
	@echo "make bench  run the benchmarks (long; prints ratio tables)"
	@echo "make bench-big  past RAM: a 48 GB store read cold (BIG_SIZE=...; about 30 min here; 48 GB of disk)"
	@echo "make lint   ruff"
	@echo "make layers check that imports point down the layers (docs/design.md, Layers)"

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
	$(BIN)/dmf run pipelines/demo.yaml --set root=$(DEMO_DIR)/demo
	$(BIN)/dmf info $(DEMO_DIR)/demo/svd
	@echo
	@echo "job spec:        pipelines/demo.yaml (run it again: every step is skipped)"
	@echo "matrices:        $(DEMO_DIR)/demo/X, $(DEMO_DIR)/demo/N (planted factors beside them)"
	@echo "SVD (U, S, Vt):  $(DEMO_DIR)/demo/svd  - compare S with 'dmf info $(DEMO_DIR)/demo/X'"
	@echo "NMF (W, H):      $(DEMO_DIR)/demo/nmf  - dmf.load('$(DEMO_DIR)/demo/nmf').W"
	@echo "run record:      dmf info $(DEMO_DIR)/demo"
	@echo
	@echo "Open the report (figures, every step, this run): $(DEMO_DIR)/demo/report.html"
	@echo "                                       Markdown: $(DEMO_DIR)/demo/report.md"

# NMF parts versus SVD components on scikit-learn's bundled digits (Lee & Seung's figure)
digits: $(VENV)/.installed-test
	$(BIN)/python examples/digits_parts.py $(DEMO_DIR)/digits-parts.png

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -n auto --maxprocesses=4 --dist loadfile -m "not slow"

# scikit-learn's own test_nmf.py against dmf.NMF (tests/peer): 1.5 minutes on a quiet
# 2-core machine, about 4 under load, so kept out of make test; CI runs both
test-slow: $(VENV)/.installed-test
	$(BIN)/python -m pytest -n auto --maxprocesses=4 --dist loadfile -m slow

# Kills at every fail point, damaged and missing bytes, lock freeze and takeover,
# overwrite while reading, hostile specs and headers: every test that
# docs/guide/reliability.md names (a subset of make test).
CHAOS_TESTS := tests/test_integrity.py tests/test_kill_resume.py \
	tests/test_jobs.py::test_checkpoint_damaged_stop_stops_a_step_whose_checkpoints_are_all_damaged \
	tests/test_store.py::test_failed_overwrite_keeps_the_good_store \
	tests/test_audio.py::test_killed_overwrite_never_damages_a_complete_separation \
	tests/test_engine_cluster.py::test_killed_worker_gives_the_same_result \
	tests/test_identity.py \
	tests/test_engine_cluster.py::test_killed_scheduler_exits_nonzero_then_resumes_on_a_new_one
chaos: $(VENV)/.installed-test
	$(BIN)/python -m pytest -n 2 --dist loadfile $(CHAOS_TESTS)

bench: $(VENV)/.installed-test
	$(BIN)/python -m pip install --quiet -e '.[compare]' || \
		echo "implicit / scikit-surprise did not install: their rows are skipped"
	$(BIN)/python -m benchmarks --data $(BENCH_DIR) all

# A store larger than this machine's memory, generated once into BENCH_DIR.
BIG_SIZE ?= 48GB
bench-big: $(VENV)/.installed-test
	$(BIN)/python -m benchmarks --data $(BENCH_DIR) --repeat 1 --warmup 0 big --size $(BIG_SIZE)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check dmf tests benchmarks examples

# Imports point down the layers, in no circle, none inside a function; fails on
# a violation not in dmf/tools/layers_baseline.txt (empty now) or on one fixed
# but still listed there.
layers: $(VENV)/.installed-run
	$(BIN)/python -m dmf.tools.layers

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache
