# keepfix — kubebuilder-style Makefile. `make help` lists the targets.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
K8S_BIN_DIR = $(shell tools/k8s/build.sh --print-dir)
PYTEST_ARGS ?=
# Real manifests from public projects, read in place by the corpus tests (they skip without it).
export KEEPFIX_CORPUS ?= $(abspath $(CURDIR)/../shared/corpus/manifests)

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make \033[36m<target>\033[0m\n"} \
	  /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2 } \
	  /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Set-up

.PHONY: install
install: $(STAMP) ## Create .venv/ with keepfix installed editable and the dev tools.

$(STAMP): pyproject.toml
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade "pip>=25.1"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e . --group dev
	@touch $@

.PHONY: k8s-bin
k8s-bin: ## Build (or find) kube-apiserver, kube-controller-manager, kubectl, etcd, helm.
	tools/k8s/build.sh

##@ Development

.PHONY: lint
lint: $(STAMP) ## Run ruff (lint + format check), mypy --strict and import-linter.
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

.PHONY: fmt
fmt: $(STAMP) ## Format and autofix with ruff.
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

.PHONY: crds
crds: $(STAMP) ## Regenerate crds/ (and the chart's templates/crd/) from keepfix.api.models.
	$(BIN)/python -m keepfix.api.crdgen --out crds

##@ Test

.PHONY: test
test: lint test-unit test-integration ## Everything this machine can run: lint, unit, integration.

.PHONY: test-unit
test-unit: $(STAMP) ## Pure unit tests (no cluster).
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

.PHONY: test-integration
test-integration: $(STAMP) k8s-bin ## Integration tests on a real kube-apiserver + etcd on loopback.
	KEEPFIX_K8S_BIN=$(K8S_BIN_DIR) $(BIN)/python -m pytest tests/integration $(PYTEST_ARGS)

.PHONY: test-e2e
test-e2e: $(STAMP) ## kind end-to-end tests (skipped where Docker cannot run).
	$(BIN)/python -m pytest tests/e2e $(PYTEST_ARGS)

.PHONY: bench
bench: $(STAMP) k8s-bin ## Run the benchmarks in bench/ (results go to docs/performance.md).
	KEEPFIX_K8S_BIN=$(K8S_BIN_DIR) $(BIN)/python -m bench

##@ Run

.PHONY: run
run: $(STAMP) k8s-bin ## A local control plane, the CRDs, examples and the operator, with a narrated drift story.
	KEEPFIX_K8S_BIN=$(K8S_BIN_DIR) $(BIN)/keepfix demo --dir .local/cluster

##@ Build

IMG ?= keepfix/keepfix:$(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)

.PHONY: image
image: ## Build the operator container image (needs a Docker engine).
	@command -v docker >/dev/null && docker info >/dev/null 2>&1 || { echo "make image: no usable Docker engine here" >&2; exit 1; }
	docker build -t $(IMG) .

.PHONY: helm-lint
helm-lint: k8s-bin ## Lint the Helm chart (strict) and render it with every option on.
	$(K8S_BIN_DIR)/helm lint --strict charts/keepfix

.PHONY: clean
clean: ## Remove the virtualenv and caches (not the ~/.cache/keepfix binaries).
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis .local
