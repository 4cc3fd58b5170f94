# Two entry points (see README): `make demo` trains the tiny example on CPU, `make test` runs the tests.
VENV   ?= .venv
PY     := $(VENV)/bin/python
FTC    := $(VENV)/bin/ftc
export HF_HUB_OFFLINE := 1
export DS_ACCELERATOR := cpu
export TOKENIZERS_PARALLELISM := false
export TORCH_EXTENSIONS_DIR ?= $(CURDIR)/.cache/torch_extensions

.PHONY: setup demo test bench goldens clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[train,test]'
	touch $@

demo: setup
	$(FTC) run examples/tiny.ftspec

# pytest exits 5 when it collected no test: that fails `make test`, as any non-zero exit does.
test: setup
	$(PY) -m pytest -q -p no:cacheprovider

goldens: setup
	$(PY) -m pytest -q -p no:cacheprovider --update-goldens

clean:
	rm -rf build dist runs .pytest_cache
