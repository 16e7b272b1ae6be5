# ccnet — every target works on a fresh clone: the virtualenv is created on first use.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: help install train eval predict export test test-all lint format bench sweep sweep-video figures clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' Makefile | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[dev]'
	-$(VENV)/bin/nbstripout --install --attributes .gitattributes  # notebooks committed without outputs
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install the project with its dev tools

train: $(STAMP)  ## train (default: the synthetic experiment on the CPU); ARGS="experiment=..."
	$(PY) -m src.train $(ARGS)

eval: $(STAMP)  ## evaluate a checkpoint; ARGS="experiment=... ckpt_path=..."
	$(PY) -m src.eval $(ARGS)

predict: $(STAMP)  ## segment images; ARGS="ckpt_path=... input=DIR_OR_FILE output=DIR"
	$(PY) -m src.predict $(ARGS)

export: $(STAMP)  ## export a checkpoint to ONNX; ARGS="ckpt_path=... output=model.onnx"
	$(PY) -m src.export $(ARGS)

test: $(STAMP)  ## run the test suite (slow tests excluded)
	WANDB_MODE=offline $(PY) -m pytest $(ARGS)

test-all: $(STAMP)  ## run every test, slow ones included
	WANDB_MODE=offline $(PY) -m pytest -m "" $(ARGS)

mutate: $(STAMP)  ## mutation testing of the core modules (docs/mutation.md); ARGS="--module losses"
	$(PY) scripts/mutate.py $(ARGS)

lint: $(STAMP)  ## ruff lint + format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)  ## apply ruff fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: $(STAMP)  ## run every cost benchmark (tables printed, JSON in bench_results/)
	$(PY) -m src.bench all

sweep: $(STAMP)  ## recurrence sweep R=0,1,2 on the long-range-context toy data
	$(PY) -m src.train -m experiment=context_toy model.recurrence=0,1,2 $(ARGS)

sweep-video: $(STAMP)  ## 2D (T=1) against 3D RCCA R=1 and R=2 on the temporal-context toy clips
	$(PY) -m src.train -m experiment=video_toy_2d,video_toy_r1,video_toy \
		hydra.sweep.dir=logs/train/multiruns/video_toy/$$(date +%Y-%m-%d_%H-%M-%S) $(ARGS)
	PYTHONPATH=. $(PY) scripts/video_probe.py --sweep latest

figures: $(STAMP)  ## redraw the README's figures (docs/figures/) from CPU runs cached in logs/figures/; ARGS="--fresh"
	$(PY) -m src.figures $(ARGS)

clean:  ## remove the virtualenv, caches and run outputs
	rm -rf $(VENV) logs bench_results .pytest_cache .ruff_cache build *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
