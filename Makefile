# pitwall: every command a developer, CI or an operator needs. See README.md.
SHELL := /bin/bash
.DEFAULT_GOAL := help
.PHONY: help install system-packages build typecheck lint images test test-unit up bench generate clean

NPM_STAMP := node_modules/.pitwall-install-stamp
WORKSPACE_MANIFESTS := $(wildcard services/*/package.json services/business-plane/extensions/*/package.json) load-tests/package.json

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 18

$(NPM_STAMP): package.json package-lock.json $(WORKSPACE_MANIFESTS)
	npm ci --no-audit --no-fund
	@touch $@

system-packages: ## Debian packages the stack and tests run (installed when root and missing)
	@services/devstack/scripts/ensure-system-packages.sh

install: $(NPM_STAMP) system-packages ## npm ci (when the lockfile changed) and Debian packages

build: install ## compile every workspace (tsc --build)
	npm run build

typecheck: build ## typecheck tests, benchmarks and configs too
	npx tsc -p tsconfig.tests.json
	npx tsc -p load-tests/k6/tsconfig.json

lint: install ## eslint, prettier, circular imports, buf lint and breaking-change check
	npm run lint
	npx buf lint
	@if git rev-parse -q --verify HEAD >/dev/null 2>&1; then npx buf breaking proto --against '.git#ref=HEAD,subdir=proto'; fi

images: build ## the three service images with podman on a stand-in base, cached by their inputs (podman, runc, debootstrap: installed when root)
	node services/images/dist/cli.js

test: build typecheck lint images ## every test suite: unit, integration (real Redis/PostgreSQL), e2e (real Directus, Chromium)
	rm -rf test-results
	npx vitest run

test-unit: install ## the fast pure-logic tests only
	npx vitest run --project unit

up: build ## the whole pipeline locally with a simulated race and the live map
	node services/devstack/dist/up.js

bench: build ## benchmarks beside their baselines (ONLY=suite,... QUICK=1); writes docs/benchmarks.md
	node services/bench/dist/main.js

generate: install ## regenerate TypeScript from proto/
	npm run generate

clean: ## remove build output
	npm run clean
	rm -rf test-results
