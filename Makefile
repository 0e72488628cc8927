PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test test-fast sim lint format bench soak clean docs-diagrams

SEED ?=
SIM_SCHEDULES ?= 20000

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m igor_p2p.demo

# Everything but the soak: units, simulation and sockets tests spread over both cores; the
# real-process (e2e) tests two files at a time (their nodes mostly wait on each other and on
# timers: about 1.2 cores busy on average, measured); last, alone, the tests that assert a
# latency bound in seconds (mark `timing`).
test: $(STAMP) lint
	$(BIN)/python -m pytest -q -m "not soak and not e2e and not timing" -p no:cacheprovider \
		-n 2 --dist loadfile
	$(BIN)/python -m pytest -q -m "e2e and not soak and not timing" -p no:cacheprovider \
		-n 2 --dist loadfile --durations=10
	$(BIN)/python -m pytest -q -m "timing and not soak" -p no:cacheprovider

# Unit tests and the deterministic simulation: no processes, no sockets (under a minute).
test-fast: $(STAMP)
	IGOR_SIM_SCHEDULES=120 IGOR_FUZZ_EXAMPLES=150 $(BIN)/python -m pytest -q \
		-m "not soak and not e2e and not sockets" -p no:cacheprovider -n 2 --dist loadfile \
		--ignore=tests/e2e --ignore=tests/net --ignore=tests/cli \
		tests/sim tests/effects tests  # the longest files first, so both workers end together

# The simulation sweep: `make sim` runs 20,000 seeded schedules; `make sim SEED=N` replays one.
sim: $(STAMP)
ifeq ($(SEED),)
	$(BIN)/python -m igor_p2p.sim sweep --first 1 --count $(SIM_SCHEDULES) --procs 2
else
	$(BIN)/python -m igor_p2p.sim run --seed $(SEED)
endif

lint: $(STAMP)
	$(BIN)/ruff check igor_p2p tests testnet
	$(BIN)/ruff format --check igor_p2p tests testnet

format: $(STAMP)
	$(BIN)/ruff format igor_p2p tests testnet
	$(BIN)/ruff check --fix igor_p2p tests testnet

bench: $(STAMP)
	$(BIN)/python -m igor_p2p.bench

# Long runs: the soak-marked tests (real-process testnet schedules, big fuzz budgets) and
# 200,000 simulation schedules (it prints the schedules per second).
SOAK_SIM_SCHEDULES ?= 200000

soak: $(STAMP)
	$(BIN)/python -m pytest -q -s -m soak -p no:cacheprovider
	$(BIN)/python -m igor_p2p.sim sweep --first 100001 --count $(SOAK_SIM_SCHEDULES) --procs 2

clean:
	rm -rf $(VENV) .bench .pytest_cache build *.egg-info
