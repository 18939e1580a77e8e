# Dy-DCA reproduction. `make reproduce` and `make test` each work as the first command on a
# fresh machine: they create .venv, install the pins and fetch the data they need.
SHELL := /bin/bash
PROFILE ?= smoke
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# your own video: `make reproduce VIDEO=clip.mp4 PARAMS="scale=3 max_frames=100"` (results/<profile>-clip.../)
VIDEO ?=
PARAMS ?=
REPRODUCE_ARGS = --profile $(PROFILE) $(if $(VIDEO),--video '$(VIDEO)') $(foreach p,$(PARAMS),-p '$(p)')
# Jupyter refuses to run as root without --allow-root (containers run as root); only then is it passed
LAB_ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: help install data reproduce sweep test test-unit test-notebooks lab clean clean-results

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'
	@echo "  PROFILE=smoke|default|budget|paper|full (now: $(PROFILE)) selects params/<profile>.yaml"
	@echo "  VIDEO=path/to/clip.mp4 (or a VSD4K folder) runs reproduce on your video; results/<profile>-<name>/"
	@echo "  PARAMS=\"name=value ...\" overrides notebook parameters in reproduce (values are YAML literals)"

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install the pinned packages

data: $(STAMP)  ## fetch and verify the clips the profile needs (into data/)
	$(PY) -m dydca_lib.sources fetch --profile $(PROFILE)

reproduce: $(STAMP)  ## run every notebook headless (papermill); results/<profile>/ (VIDEO=: your video)
	$(PY) -m dydca_lib.reproduce $(REPRODUCE_ARGS)

# a grid of notebook cells on Dask: GRID=comparison (notebook 04), budget (04b) or rate_quality (08); SCHEDULER=tcp://HOST:8786
GRID ?= comparison
SCHEDULER ?=
sweep: $(STAMP)  ## run notebook 04's (GRID=budget: 04b's, GRID=rate_quality: 08's) cells on Dask (SCHEDULER=tcp://host:8786, else local)
	$(PY) -m dydca_lib.sweep --profile $(PROFILE) --grid $(GRID) $(if $(SCHEDULER),--scheduler $(SCHEDULER)) $(if $(VIDEO),--video '$(VIDEO)') $(foreach p,$(PARAMS),-p '$(p)')

test: test-unit test-notebooks  ## unit tests + notebooks under nbval (smoke defaults)

test-unit: data
	$(PY) -m pytest -q tests

test-notebooks: data
	$(PY) -m pytest -q --nbval-lax --nbval-current-env -p no:cacheprovider notebooks/

lab: $(STAMP)  ## JupyterLab on the notebooks, on 127.0.0.1 with a token (as root too)
	$(VENV)/bin/jupyter lab --ip=127.0.0.1 $(LAB_ROOT_FLAG) notebooks/

clean-results:  ## delete results/<profile>/
	rm -rf results/$(PROFILE)

clean:  ## delete .venv (data/ and results/ are kept)
	rm -rf $(VENV)
