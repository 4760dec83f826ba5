# The two commands of the README: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed
WORKDIR ?= runs/demo

.PHONY: demo test clean

# The pinned environment the tests pass in (requirements.txt), then the package itself,
# editable and without resolving its ranges again: `landmark` on the venv's PATH.
$(STAMP): pyproject.toml requirements.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.txt
	$(VENV)/bin/pip install --quiet --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	JAX_PLATFORMS=cpu $(VENV)/bin/python main.py --config=configs/quick.py --workdir=$(WORKDIR)

# Two workers, each given whole test modules (module fixtures run once), slowest first
# (tests/conftest.py): XLA compiles on one core, so two workers keep both busy.
test: $(STAMP)
	JAX_PLATFORMS=cpu $(VENV)/bin/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder tests

clean:
	rm -rf $(VENV) runs
