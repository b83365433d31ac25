# Every target that needs Python goes through .venv, created on first use, so
# `make run` and `make test` work on a fresh Debian machine with python3 only.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?=

.PHONY: run test lint format bench soak fuzz clean

$(STAMP): pyproject.toml setup.py
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { \
	  echo "python3 -m venv failed: on Debian, apt-get install python3-venv" >&2; exit 1; }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# `make run` without CONFIG: the default config, persisting into $(RUN_DIR)
# (git-ignored) so stored records survive Ctrl-C and the next `make run`.
RUN_DIR ?= .collector

run: $(STAMP) $(if $(CONFIG),,$(RUN_DIR)/collector.yaml)
	$(BIN)/collector run --config $(if $(CONFIG),$(CONFIG),$(RUN_DIR)/collector.yaml)

$(RUN_DIR)/collector.yaml: config/collector.yaml
	@mkdir -p $(RUN_DIR)
	sed 's|persist_dir: null  *#.*|persist_dir: $(abspath $(RUN_DIR))/data  # make run: kept across restarts|' $< > $@

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The suite with the native parser and renderer (when built), then the parser
# and page suites again on the pure path alone (COLLECTOR_PURE=1), as a
# machine without a compiler runs.
test: lint
	$(BIN)/pytest -q
	COLLECTOR_PURE=1 $(BIN)/pytest -q tests/test_native.py tests/test_framing.py tests/test_rfc5424.py \
	  tests/test_parse.py tests/test_rfc3164.py tests/test_listeners.py tests/test_cli.py \
	  tests/test_netio.py tests/test_render.py tests/test_http.py tests/test_native_columns.py

# The native parser under AddressSanitizer + UBSan, differential suite and corpus.
fuzz: $(STAMP)
	.ci/fuzz

bench: $(STAMP)
	$(BIN)/python bench/run_all.py $(if $(QUICK),--quick,)

soak: $(STAMP)
	$(BIN)/python bench/soak.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis $(RUN_DIR) build collector/*.so
