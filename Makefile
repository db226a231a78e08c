# DeviceFleet developer entry points. `make up` runs the platform locally: in pods on the
# local stack's real node (as root), else as processes with demo fleets; `make test` runs
# every test tier against the local stack (it starts it).
SHELL := /bin/bash
.DEFAULT_GOAL := help
export UV_CACHE_DIR ?= $(HOME)/.cache/uv
UV ?= uv

.PHONY: help install up up-processes down status stack-up stack-down images lint audit charts tools test test-unit test-integration demo-rows health-train health-eval bench clean

help: ## show this help
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-17s %s\n", $$1, $$2}'

install: ## install uv (if missing) and the locked Python environment
	@command -v $(UV) >/dev/null || python3 -m pip install --quiet "uv==0.13.9"
	$(UV) sync --frozen

up: install stack-up ## the platform in pods (helm install + an example fleet) and where to look
	@source devstack/lib.sh && if node_enabled; then bash devstack/cluster.sh up; \
	else echo "no real node (not root or DEVSTACK_NODE=off): running the platform as processes"; \
	$(MAKE) --no-print-directory up-processes; fi

up-processes: install stack-up ## the pipeline services and demo simulators as local processes
	bash devstack/platform.sh up
	@$(MAKE) --no-print-directory demo-rows

down: ## stop simulators, services, pods and the stack (data is kept)
	-bash devstack/platform.sh down
	bash devstack/down.sh

status: ## what is running, where its log is
	@bash devstack/status.sh
	@bash devstack/platform.sh status
	@source devstack/lib.sh && if node_enabled; then bash devstack/cluster.sh status; fi

stack-up: ## only the brokers and the database (Kafka, Mosquitto, PostgreSQL, Prometheus)
	bash devstack/up.sh

stack-down:
	bash devstack/down.sh

images: ## build the images without Docker and import them into the real node (needs stack-up)
	@source devstack/lib.sh && if node_enabled; then bash devstack/images/build.sh all; \
	else echo "no real node (not root or DEVSTACK_NODE=off): images not needed"; fi

lint: install ## ruff + mypy + bandit + pip-audit (docs/security.md)
	$(UV) run ruff check services operator ml tests scripts devstack bench
	$(UV) run ruff format --check services operator ml tests scripts devstack bench
	$(UV) run mypy
	$(UV) run bandit -c pyproject.toml -r services operator ml -q
	$(UV) run python scripts/audit.py

audit: install ## pip-audit of uv.lock; fails if PyPI's vulnerability data cannot be reached
	$(UV) run python scripts/audit.py --strict

charts: ## package chart dependencies and `helm lint --strict` every chart (needs stack-up's helm)
	bash scripts/charts.sh all

tools: ## build the checkers the deploy tests use (kind/BuildKit validator, skaffold schema)
	bash devstack/tools/install.sh

test: lint stack-up charts tools images ## lint, then unit + integration tests against the local stack
	$(UV) run pytest tests

test-unit: install
	$(UV) run pytest tests/unit

test-integration: install stack-up charts images
	$(UV) run pytest tests/integration

health-train: install ## retrain the truck health model (writes the processor's artifact, ~1.5 min)
	$(UV) run devicefleet-ml train

bench: install stack-up ## benchmarks vs raw baselines → docs/BENCHMARKS.md (ONLY=P3,P4 QUICK=1)
	$(UV) run python -m bench $(if $(ONLY),--only $(ONLY)) $(if $(QUICK),--quick)

.PHONY: fuzz
fuzz: install ## fuzz the decoders and envelope parsers (atheris; FUZZ_SECONDS=60 per target)
	$(UV) run python -m bench.fuzz_decoders --seconds $(or $(FUZZ_SECONDS),60) $(if $(ONLY),--only $(ONLY))

health-eval: install ## score the model on a simulated fleet: docs/health/evaluation.md + plots
	$(UV) run devicefleet-ml evaluate

demo-rows: ## decoded rows of the demo fleets in the last minute, per fleet
	@source devstack/lib.sh && PGPASSWORD=$$PG_PASSWORD psql -h 127.0.0.1 -p $$PG_PORT \
	  -U $$PG_USER -d $$PG_DATABASE -c "SELECT attributes->>'fleet' AS fleet, profile, \
	  count(*) AS rows, count(DISTINCT device_id) AS devices, max(time) AS newest \
	  FROM iot_measurements WHERE ingested_at > now() - interval '1 minute' \
	  AND attributes->>'fleet' LIKE 'demo-%' GROUP BY 1, 2 ORDER BY 1"
