# The two set-up commands: `make serve` and `make test`. Each installs what it needs first.
VENV  := .venv
BIN   := $(VENV)/bin
STAMP := $(VENV)/.hearth-installed

.PHONY: serve test fuzz check install starter bench clean

serve: starter
	$(BIN)/hearth serve --model $$($(BIN)/hearth starter --print-id)

test: starter
	scripts/test-deps.sh
	$(BIN)/hearth starter gemma3
ifeq ($(PYTEST_ARGS),)
	# The in-process tiers share the cores (xdist); the real-server tiers run alone, since
	# some of them measure how a busy machine behaves.
	$(BIN)/python -m pytest -n 2 tests/unit tests/api
	$(BIN)/python -m pytest tests/e2e tests/ui
else
	$(BIN)/python -m pytest $(PYTEST_ARGS)
endif

# The property tests (GGUF validator, the OpenAPI operations) with thousands of examples each.
fuzz: starter
	$(BIN)/python -m pytest -m fuzz --hypothesis-profile fuzz $(PYTEST_ARGS)

check: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

install: $(STAMP)

$(STAMP): pyproject.toml scripts/bootstrap.sh
	scripts/bootstrap.sh
	touch $@

# Fetches the starter model into the models directory (sha256-checked; a no-op when present).
starter: install
	$(BIN)/hearth starter

bench: starter
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
