# Two commands do all set-up: `make demo` (the main job on bundled defaults)
# and `make test`. Both create and reuse a local virtual environment in .venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.posecli-installed
DEMO ?= demo-out

.PHONY: demo test install man clean-demo gpu-check

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

# Everything the project checks on CUDA, in one call (< 8 min on one GPU): the tests
# marked cuda, then training and animate throughput appended to benchmarks/RESULTS.md.
# Without a GPU it says so and stops after the CPU part (the same tests, skipped).
gpu-check: $(STAMP)
	$(PY) -m pytest -q -m cuda tests/test_cuda.py
	@if $(PY) -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then \
		$(PY) benchmarks/train_throughput.py --device cuda --size 64 --batch 128 --width 1 --images 4096 --steps 48 --baseline fc04dad --append && \
		$(PY) benchmarks/animate_throughput.py --device cuda --seconds 10 --append; \
	else echo "gpu-check: no CUDA GPU here; ran the CPU part only (tests marked cuda skipped)"; fi
