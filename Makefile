# The two commands a newcomer needs: `make demo` and `make test`. Both set themselves up.
VENV ?= .venv
OUT ?= out
BIN := $(VENV)/bin

.PHONY: setup demo test bench lint lock clean

setup:
	@bash scripts/setup.sh

demo: setup
	@bash scripts/demo.sh "$(OUT)"

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python -m bench.run --out $(OUT)/bench

lint: setup
	$(BIN)/ruff check .

lock: setup
	@bash scripts/lock.sh

clean:
	rm -rf $(OUT) .pytest_cache .ruff_cache
