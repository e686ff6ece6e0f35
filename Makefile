# The two set-up commands: `make serve` and `make test`. Each installs what it needs first.
VENV  := .venv
BIN   := $(VENV)/bin
STAMP := $(VENV)/.hearth-installed
HOSTILE := tests/e2e/test_hostile_input_real.py

.PHONY: serve test test-desktop fuzz check install starter bench binary clean

serve: starter
	$(BIN)/hearth serve --model $$($(BIN)/hearth starter --print-id)

test: starter
	scripts/test-deps.sh
	$(BIN)/hearth starter gemma3
ifeq ($(PYTEST_ARGS),)
	# The in-process tiers, and the hostile-input battery (light requests, nothing timed),
	# share the cores (xdist). The other real-server tests run one at a time: they are bound
	# by the model's compute (two at once took as long), and some time a busy machine.
	$(BIN)/python -m pytest -n 2 --dist loadfile tests/unit tests/api $(HOSTILE)
	$(BIN)/python -m pytest --durations=25 tests/e2e tests/ui --ignore=$(HOSTILE)
else
	$(BIN)/python -m pytest $(PYTEST_ARGS)
endif

# The desktop side, too slow and big for `make test`: the sidecar contract on the built binary
# (a PyInstaller build, cached per version of its inputs) and `hearth desktop`'s window under
# Xvfb (the desktop extra: Qt WebEngine, ~670 MiB, installed into the venv here).
test-desktop: starter
	scripts/test-deps.sh desktop
	$(BIN)/python -m pytest tests/desktop $(PYTEST_ARGS)

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

# The sidecar binary for desktop apps (docs/desktop.md): dist/hearth-server/, its Tauri-named
# launcher and a .tar.gz.
binary: install
	scripts/build-binary.sh

bench: starter
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
