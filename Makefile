# The verbs people expect. Everything installs itself: Debian packages (as root),
# then one virtual environment pinned by requirements.lock.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PYTEST_ARGS ?=
# The edge fleet's lane beside the rest (tests/conftest.py); 1 for one process.
TEST_LANES ?= 2

.PHONY: demo test lint bench venv system-deps lock clean

demo: system-deps venv  ## bring the local target up, serve, kill, resume, shut down
	$(BIN)/triptyque demo

test: system-deps venv  ## the whole suite, real engine included, in two lanes (tests/conftest.py)
	bash tests/k8s/setup_checkov.sh
	$(BIN)/python -m pytest -n $(TEST_LANES) --dist loadscope $(PYTEST_ARGS)

bench: venv  ## gateway overhead vs vLLM and a fake engine, kill-switch timing (incl. the edge fleet), overload (~11 min); as root also the edge scale curves, 2-32 nodes (about 2 h more)
	$(BIN)/python -m bench $(BENCH_ARGS)

lint: venv  ## ruff, mypy (package, tests, bench) and the layer contract in pyproject.toml
	$(BIN)/ruff check triptyque tests bench stacks
	$(BIN)/mypy
	$(BIN)/lint-imports

system-deps:
	scripts/system-deps.sh $(if $(filter demo,$(MAKECMDGOALS)),demo,test)

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --no-deps -r requirements.lock
	# PyPI's torchvision/torchaudio do not match the CPU torch and break `import vllm`;
	# vLLM needs them only for multimodal models.
	$(BIN)/pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
	$(BIN)/pip install -q --no-deps -e .
	touch $@

lock:  ## re-resolve every pinned dependency from pyproject.toml into requirements.lock
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install -q -e '.[cpu,dev,k8s,edge,monitoring,bench,burden]'
	.venv-lock/bin/pip uninstall -q -y torchvision torchaudio torchcodec || true
	.venv-lock/bin/pip freeze --all --exclude-editable | grep -v -e '^triptyque' -e '^pip==' > requirements.lock
	rm -rf .venv-lock

clean:
	rm -rf $(VENV) .venv-checkov .triptyque .pytest_cache .mypy_cache .ruff_cache
