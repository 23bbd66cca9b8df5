# The habits of this project. Every target makes the virtualenv it needs.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml setup.py | cksum | cut -d' ' -f1)

.PHONY: install build test lint format demo bench soak fuzz fuzz-build fuzz-atheris fuzz-sockets debug clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip "setuptools>=68" wheel "Cython>=3.0.10"

# Runtime and test dependencies plus an editable, compiled install.
$(STAMP): $(PY) pyproject.toml setup.py
	$(PY) -m pip install --quiet --no-build-isolation -e ".[test]"
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

# Recompile changed .pyx files in place (incremental).
build: $(STAMP)
	$(PY) setup.py --quiet build_ext --inplace

# The suite (soak tests aside) under coverage.py, subprocesses included (see
# [tool.coverage.run] in pyproject.toml); the data in test-artifacts/coverage/, a text
# report there too. Branch coverage of the proxy core and the SMPP layer must stay above
# the floors, set a few points under what the suite measured then (95.7 % and 92.3 %).
# The Cython modules in smps/_native are not measured.
COVERAGE       := $(VENV)/bin/coverage
COVERAGE_DIR   := test-artifacts/coverage
PROXY_FLOOR    := 92
SMPP_FLOOR     := 89

test: build lint
	rm -rf $(COVERAGE_DIR)
	$(COVERAGE) run -m pytest -q -m "not soak"
	$(COVERAGE) combine -q
	$(COVERAGE) report > $(COVERAGE_DIR)/report.txt
	@printf 'branch coverage smps/proxy: '
	@$(COVERAGE) report --include='smps/proxy/*' --format=total --fail-under=$(PROXY_FLOOR)
	@printf 'branch coverage smps/smpp: '
	@$(COVERAGE) report --include='smps/smpp/*' --format=total --fail-under=$(SMPP_FLOOR)

lint: $(STAMP)
	$(VENV)/bin/ruff check smps tests bench fuzz
	$(VENV)/bin/ruff format --check smps tests bench fuzz

format: $(STAMP)
	$(VENV)/bin/ruff format smps tests bench fuzz
	$(VENV)/bin/ruff check --fix smps tests bench fuzz

demo: build
	$(VENV)/bin/smps demo

# Micro benchmarks; the instructions one worker spends per original (callgrind on
# bench/hotpath_driver.py, when valgrind is installed: issue 23's bar); then short load
# runs of the standard scenario with the bare relay after it (--baseline: the ratio of
# SMPS's CPU per message to the relay's), of the screening one, which reports the CPU
# per original screening added, and of the concat scenario with every part judged alone
# and with the hold, which reports what the hold costs per part and per whole message
# (bench/README.md).
IR_ORIGINALS := 20000
bench: build
	$(PY) -m pytest bench -q --benchmark-enable --benchmark-only --benchmark-columns=min,median,mean,ops
	mkdir -p test-artifacts
	@if command -v valgrind >/dev/null; then \
		valgrind --tool=callgrind --callgrind-out-file=test-artifacts/callgrind.out \
			--toggle-collect=_operator_call $(PY) bench/hotpath_driver.py --originals $(IR_ORIGINALS) \
			--repeat 1 2>&1 | awk '/Collected/ { printf "Ir per original (3 NEs): %.0f\n", $$4 / $(IR_ORIGINALS) }'; \
	else echo "valgrind not installed: no Ir per original"; fi
	$(VENV)/bin/smps bench --duration 10 --warmup 3 --baseline --json test-artifacts/bench.json
	$(VENV)/bin/smps bench --duration 10 --warmup 3 --screening \
		--compare-to test-artifacts/bench.json --json test-artifacts/bench-screening.json
	$(VENV)/bin/smps bench --duration 10 --warmup 3 --concat --no-hold \
		--json test-artifacts/bench-concat-alone.json
	$(VENV)/bin/smps bench --duration 10 --warmup 3 --concat \
		--compare-to test-artifacts/bench-concat-alone.json --json test-artifacts/bench-concat.json

soak: build
	$(PY) -m pytest -q -m soak tests

fuzz: build
	$(PY) -m pytest -q bench/fuzz_codec.py --hypothesis-profile=fuzz -p no:cacheprovider

# Coverage-guided fuzzing (atheris, the optional extra "fuzz") of the codec, the text
# codecs and the session core, FUZZ_SECONDS in all (fuzz/run.py), with the Cython
# modules built a second time by clang with coverage hooks and, unless
# FUZZ_SANITIZER=none, AddressSanitizer (fuzz/build.sh).
FUZZ_SECONDS ?= 600
FUZZ_SANITIZER ?= address
FUZZ_NATIVE := build/fuzz-$(FUZZ_SANITIZER)
FUZZ_ENV := SMPS_FUZZ_NATIVE=$(FUZZ_NATIVE)
ifeq ($(FUZZ_SANITIZER),address)
FUZZ_ENV += LD_PRELOAD=$(abspath $(FUZZ_NATIVE))/asan_with_fuzzer.so ASAN_OPTIONS=detect_leaks=0
endif
FUZZ_STAMP := $(VENV)/.fuzz-installed
$(FUZZ_STAMP): $(STAMP)
	$(PY) -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['fuzz'])" | xargs $(PY) -m pip install --quiet
	touch $@

fuzz-build: $(FUZZ_STAMP)
	fuzz/build.sh $(PY) $(FUZZ_NATIVE) $(FUZZ_SANITIZER)

fuzz-atheris: fuzz-build
	$(FUZZ_ENV) $(PY) -m fuzz.run --seconds $(FUZZ_SECONDS)

# A node (smps run, 2 workers) under hostile NEs and a hostile SMSC, then health checks.
FUZZ_SOCKET_SECONDS ?= 180
fuzz-sockets: build
	$(PY) -m fuzz.sockets --seconds $(FUZZ_SOCKET_SECONDS)

# Build with CYTHON_TRACE for profilers (line-level) and leak counting.
debug: $(STAMP)
	SMPS_DEBUG=1 $(PY) setup.py --quiet build_ext --inplace --force

clean:
	rm -rf build *.egg-info smps/_native/*.c smps/_native/*.so smps/_native/*.html .pytest_cache
