# The verbs a user types. Every target installs what it needs itself.
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
# Lambda architecture for `make package` (the template's Architecture parameter).
ARCH ?= arm64
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: help venv tools build demo demo-org query guardrail-scp deploy-members test unit-test lint fmt bench bench-smoke package deploy clean

help:
	@echo "make demo     the whole workflow end to end on a local AWS emulator (no account needed)"
	@echo "make demo-org one hub over an organization on the local cloud: three accounts, two Regions"
	@echo "make query    the Athena named queries (queries/*.sql) in DuckDB over the reports make demo saved"
	@echo "make deploy-members  member.yaml to OUS=ou-…,… in REGIONS=r1,r2 from the hub STACK in REGION (management account)"
	@echo "make guardrail-scp  the launch guardrail as an SCP (MODE=FAIL|FAIL_OR_UNSCANNED, or STACK=name REGION=r; MEMBER_ROLE=amiscan-member with member accounts)"
	@echo "make test     every test: lint, unit tests, functions against a local AWS emulator, template checks"
	@echo "make build    debug build of the workspace"
	@echo "make lint     cargo fmt --check, clippy -D warnings, cfn-lint, checkov, ASL validation"
	@echo "make bench    cost of every Lambda and of a whole scan, release build (BENCHMARKS.md)"
	@echo "make package  release zips of every Lambda (ARCH=arm64|x86_64) under target/lambda/"
	@echo "make deploy   sam build && sam deploy --guided"
	@echo "make clean    remove build output, the venv and node_modules"

# Python tools at exact pins, in a project venv.
venv: $(VENV)/.installed
$(VENV)/.installed: requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --disable-pip-version-check --quiet -r requirements-dev.txt
	touch $@

# checkov in a venv of its own: its exact pins clash with the dev tools'.
CHECKOV_VENV := $(VENV)/checkov
$(CHECKOV_VENV)/.installed: requirements-checkov.txt $(VENV)/.installed
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --disable-pip-version-check --quiet -r requirements-checkov.txt
	touch $@

# Node tools (asl-validator) at the versions package-lock.json pins.
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

tools: venv $(CHECKOV_VENV)/.installed node_modules/.installed

build:
	cargo build --workspace

# The whole workflow on the local cloud: moto behind an IAM gate (iam-simulate
# decides every call against its caller's policies from the template), each
# function's debug build run as its own role; on free 127.0.0.1 ports, every
# process stopped by its PID when the demo ends.
demo: tools build
	python local/demo.py

# One hub over an organization on the local cloud: the hub and two member
# accounts with member.yaml in two Regions, and an account not onboarded.
demo-org: tools build
	python local/demo_org.py

# The named queries, unchanged, in DuckDB over the copy of the report bucket
# that `make demo` saved in .local/demo-reports (REPORTS=dir for another copy).
REPORTS ?= .local/demo-reports
query: venv
	python local/query.py --reports $(REPORTS) $(QUERY)

# The launch guardrail's statements as a service control policy, from
# template.yaml (MODE=FAIL or FAIL_OR_UNSCANNED, ACCOUNT=id), or with the
# values of a deployed stack (STACK=name REGION=region, your credentials).
MODE ?= FAIL
ACCOUNT ?= 123456789012
# member.yaml to the accounts of OUS in REGIONS (comma-separated), from the
# hub stack's outputs (STACK, REGION): run in the management account.
deploy-members: venv
	python local/members.py --hub-stack $(or $(STACK),amiscan) --hub-region $(REGION) --ous $(OUS) --regions $(REGIONS) \
	  $(if $(GUARDRAIL),--guardrail $(GUARDRAIL)) $(if $(DELEGATED_ADMIN),--delegated-admin)

guardrail-scp: venv
	python local/guardrail.py $(if $(STACK),--stack $(STACK) $(if $(REGION),--region $(REGION)),--mode $(MODE) --account $(ACCOUNT)) $(if $(MEMBER_ROLE),--member-role $(MEMBER_ROLE))

lint: tools
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	cfn-lint template.yaml member.yaml
	$(CHECKOV_VENV)/bin/checkov -f template.yaml --config-file .checkov.yaml
	$(CHECKOV_VENV)/bin/checkov -f member.yaml --config-file .checkov.yaml
	for f in statemachines/*.asl.json; do node_modules/.bin/asl-validator --no-arn-check --json-path "$$f" || exit 1; done

fmt:
	cargo fmt --all

# Unit tests only: no emulator needed.
unit-test:
	cargo test --workspace --lib --bins

# Everything. tests/with-moto starts the local cloud on a free 127.0.0.1 port
# and stops it by its PID when cargo test ends, passes or fails; the Python
# tests run the debug build of every function.
test: lint build
	tests/with-moto cargo test --workspace --no-fail-fast
	python -m pytest -q tests
	$(MAKE) --no-print-directory bench-smoke

# The measurements of BENCHMARKS.md: release zips for this machine's
# architecture (the bench runs them), then every figure, as JSON under
# $(CARGO_TARGET_DIR or target)/bench/. Exits non-zero when an effect check
# fails or a figure misses its target.
HOST_ARCH_FLAG := $(if $(filter aarch64 arm64,$(shell uname -m)),--arm64,--x86-64)
bench: tools
	cargo lambda build --release --output-format zip $(HOST_ARCH_FLAG)
	python tests/bench/bench.py

# One size, one run, on the debug build the tests already made: checks that
# the bench still works without paying for a release build.
bench-smoke: tools build
	python tests/bench/bench.py --smoke

package: venv
	@case "$(ARCH)" in \
	  arm64) target=aarch64-unknown-linux-gnu; flag=--arm64 ;; \
	  x86_64) target=x86_64-unknown-linux-gnu; flag=--x86-64 ;; \
	  *) echo "ARCH must be arm64 or x86_64" >&2; exit 2 ;; \
	esac; \
	if ! rustup target list --installed 2>/dev/null | grep -qx "$$target"; then \
	  echo "the Rust target $$target is not installed: rustup target add $$target (or make package ARCH=x86_64)" >&2; exit 2; \
	fi; \
	cargo lambda build --release --output-format zip $$flag
	@ls -l $${CARGO_TARGET_DIR:-target}/lambda/*/bootstrap.zip

deploy: venv
	$(VENV)/bin/pip install --disable-pip-version-check --quiet -r requirements-deploy.txt
	sam build --parameter-overrides Architecture=$(ARCH)
	sam deploy --guided

clean:
	cargo clean
	rm -rf $(VENV) node_modules
