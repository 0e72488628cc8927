PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test lint format bench soak clean docs-diagrams

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m igor_p2p.demo

test: $(STAMP) lint
	$(BIN)/python -m pytest -q -m "not soak" -p no:cacheprovider

lint: $(STAMP)
	$(BIN)/ruff check igor_p2p tests testnet
	$(BIN)/ruff format --check igor_p2p tests testnet

format: $(STAMP)
	$(BIN)/ruff format igor_p2p tests testnet
	$(BIN)/ruff check --fix igor_p2p tests testnet

bench: $(STAMP)
	$(BIN)/python -m igor_p2p.bench

soak: $(STAMP)
	$(BIN)/python -m pytest -q -m soak -p no:cacheprovider

clean:
	rm -rf $(VENV) .bench .pytest_cache build *.egg-info
