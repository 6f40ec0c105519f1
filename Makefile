# Two commands do all set-up: `make demo` (the main job on bundled defaults)
# and `make test`. Both create and reuse a local virtual environment in .venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.posecli-installed
DEMO ?= demo-out

.PHONY: demo test install man clean-demo

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

man: $(STAMP)
	$(PY) scripts/gen_man.py -o man/posecli.1

demo: $(STAMP)
	bash scripts/demo.sh $(DEMO)
