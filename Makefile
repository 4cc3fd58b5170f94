# Two entry points (see README): `make demo` trains the tiny example on CPU, `make test` runs the tests;
# `make bench` runs the benchmarks and regenerates docs/performance.md.
VENV   ?= .venv
PY     := $(VENV)/bin/python
FTC    := $(VENV)/bin/ftc
export HF_HUB_OFFLINE := 1
export DS_ACCELERATOR := cpu
export TOKENIZERS_PARALLELISM := false
export TORCH_EXTENSIONS_DIR ?= $(CURDIR)/.cache/torch_extensions

.PHONY: setup postgres textmate demo test fuzz bench goldens gpu-site clean

setup: $(VENV)/.installed postgres

# The shared-study tests start their own PostgreSQL server: install the server binaries when missing.
postgres:
	@command -v pg_ctl >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[train,test,lsp]'
	touch $@

# the TextMate engine (vscode-textmate, vscode-oniguruma) that tests/test_editor_grammar.py tokenises with
textmate: tests/textmate/node_modules/.installed

tests/textmate/node_modules/.installed: tests/textmate/package.json tests/textmate/package-lock.json
	npm ci --prefix tests/textmate --no-audit --no-fund --silent
	touch $@

demo: setup
	$(FTC) run examples/tiny.ftspec

# pytest exits 5 when it collected no test: that fails `make test`, as any non-zero exit does.
# Two workers (pytest-xdist), each test file on one of them so that a file's shared runs are made once: most
# tests wait on subprocesses, so two workers finish the suite in about 3/4 of the time on a 2-core machine.
# TEST_WORKERS=0 runs it in this process.
TEST_WORKERS ?= 2
test: setup textmate
	$(PY) -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile --durations=15

# Long fuzzing: the fuzz tests in rounds of random examples for FUZZ_MINUTES (default 10) against a saved
# example database (.hypothesis/fuzz); prints cases run and failures. CI keeps its short derandomized run.
FUZZ_MINUTES ?= 10
fuzz: setup
	$(PY) tests/fuzz_driver.py --minutes $(FUZZ_MINUTES)

goldens: setup
	$(PY) -m pytest -q -p no:cacheprovider --update-goldens

# Every benchmark under bench/, regenerating the tables of docs/performance.md (tens of minutes; not run in CI).
bench: setup
	$(PY) bench/report.py

# bitsandbytes for an offline GPU machine whose Python lacks it (bench/gpu_memory.sh puts .gpu/site on the
# path there): the package from the venv with only its CPU and CUDA $(BNB_CUDA) libraries, about 5 MB.
BNB_CUDA ?= 130
gpu-site: setup
	rm -rf .gpu/site && mkdir -p .gpu/site
	cp -r "$$($(PY) -c 'import importlib.util, os; print(os.path.dirname(importlib.util.find_spec("bitsandbytes").origin))')" .gpu/site/
	find .gpu/site -name 'libbitsandbytes_*.so' ! -name libbitsandbytes_cpu.so ! -name 'libbitsandbytes_cuda$(BNB_CUDA).so' -delete
	find .gpu/site -name __pycache__ -prune -exec rm -rf {} +
	du -sh .gpu/site

clean:
	rm -rf build dist runs .pytest_cache
