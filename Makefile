# busline: one entry point. `make demo` and `make test` do all their own set-up on a fresh machine.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

STATE      := $(CURDIR)/.state
LOCALSTACK := infra/localstack/localstack.sh
TOOLS      := $(STATE)/tools
PYTHON     ?= $(shell $(LOCALSTACK) python)

# Clients talk to LocalStack on the host.
export AWS_ENDPOINT_URL      ?= http://127.0.0.1:4566
export AWS_ACCESS_KEY_ID     ?= test
export AWS_SECRET_ACCESS_KEY ?= test
export AWS_REGION            ?= us-east-1
export AWS_DEFAULT_REGION    ?= us-east-1
export SAM_CLI_TELEMETRY     := 0
# `make deploy` talks to AWS with your credentials: it takes away the LocalStack defaults above, and
# keeps whatever you set yourself.
AWS_DEFAULTS_UNSET := $(foreach v,AWS_ENDPOINT_URL AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_REGION AWS_DEFAULT_REGION,$(if $(filter file,$(origin $(v))),-u $(v)))

FUNCTIONS  := $(notdir $(wildcard functions/*))
TARGET_DIR  = $${CARGO_TARGET_DIR:-target}
# The Cargo profile `make deploy-local` deploys: the debug build by default, which `make test` and
# `make demo` deploy too. Its dependencies are optimised (Cargo.toml), so it is quick to rebuild and
# light on a two-core LocalStack, and it is the build the tests compile anyway. PROFILE=release
# deploys the LTO binaries that ship (`make test-release`, `make soak`).
PROFILE    ?= dev
PROFILE_DIR = $(if $(filter dev,$(PROFILE)),debug,$(PROFILE))
# What `make deploy-local` builds. The debug build is the workspace's whole one (libraries, binaries,
# tests, examples) in one cargo invocation, so `make test` finds it built: the functions built alone
# would resolve their dependencies' features without the tests' (tokio's `test-util`) and compile
# the SDK a second time (8 minutes here). Other profiles build the functions alone.
DEPLOY_BUILD = $(if $(filter dev,$(PROFILE)),--workspace --lib --bins --tests --examples,$(addprefix -p ,$(FUNCTIONS)) --bins)

# $(call with_localstack,<commands>): run them against LocalStack, starting it first and stopping it
# after (whatever they exit with) when it was not already running.
define with_localstack
	@if $(LOCALSTACK) status >/dev/null 2>&1; then \
	  $(1); \
	else \
	  $(LOCALSTACK) start; \
	  trap '$(LOCALSTACK) stop' EXIT; \
	  $(1); \
	fi
endef


.PHONY: help demo trace deploy build localstack-install tracers test test-release soak soak-run bench bench-run profile-init profile-toolkit redrive lint-template tools localstack-start localstack-stop localstack-status deploy-local release release-arm64 sizes clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

demo: deploy-local ## Start LocalStack, build and deploy the stack, run two orders through the saga and print their timelines (STOP=1 stops LocalStack after)
	cargo run --quiet -p busline-tests --example demo
	@if [ -n "$${STOP:-}" ]; then $(LOCALSTACK) stop; else echo "LocalStack is still running: 'make localstack-stop' stops it (or run 'make demo STOP=1')."; fi

trace: ## One business event's journey on LocalStack: every hop of its trace in order (function, outcome, timings, errors) and the saga's states: make trace ID=<order, event, correlation or trace id>
	@test -n "$${ID:-}" || { echo "usage: make trace ID=<order id, event id, correlation id or trace id>"; exit 2; }
	@$(LOCALSTACK) status >/dev/null 2>&1 || { echo "LocalStack is not running: 'make demo' or 'make deploy-local' starts it and deploys the stack"; exit 2; }
	cargo run --quiet -p busline-tests --example trace -- "$(ID)"

# The executor's own unit tests (with LocalStack's interpreter, which `localstack-start` installed),
# then the short soak, on the freshly deployed stack: the rest of the suite leaves functions,
# mappings and requeued deliveries behind that slow LocalStack down. It is `#[ignore]`d so that the
# workspace run lists it as ignored rather than running it a second time. `--workspace` resolves
# the same features as the deploy's build, which `-p busline-tests` would not: it would compile the
# SDK again.
RUN_TESTS = $(STATE)/localstack/venv/bin/python -m unittest discover -s infra/localstack/process-executor -p 'test_*.py' && cargo test --workspace --test soak -- --ignored --nocapture && cargo test --workspace --lib --bins --tests --examples && cargo test --workspace --doc

# On a fresh machine the build and the installs (the template linters, the interop libraries,
# LocalStack) run at once: the installs mostly wait on downloads while cargo has the cores.
test: ## Everything the tests need (LocalStack, the stack deployed from the debug build), then all tests (LocalStack is started and stopped if it was not running)
	$(MAKE) --no-print-directory -j4 build tools localstack-install tracers
	$(MAKE) --no-print-directory lint-template
	$(call with_localstack,$(MAKE) --no-print-directory deploy-local && $(RUN_TESTS))

# What ships, checked where it differs from what `make test` deployed: the LTO build, deployed, the
# short soak on it, and each binary's start with its deployed environment and its size
# (tests/tests/release_binaries.rs, `#[ignore]`d in the workspace run). CI runs it after `make test`.
test-release: ## The release binaries SAM ships (LTO), deployed to LocalStack: the short soak on them, and each one's start and size (LocalStack is started and stopped if it was not running)
	$(call with_localstack,$(MAKE) --no-print-directory release && $(MAKE) --no-print-directory deploy-local PROFILE=release && cargo test --workspace --test soak --test release_binaries -- --ignored --nocapture)

soak: ## Load and faults at once on the stack (2,000 webhooks from 16 senders, duplicates, poison, executor faults, a bus outage, CDC and a batch sync), then the conservation check and its figures, on the release binaries (SOAK_WEBHOOKS=<n> for another size; LocalStack is started and stopped if it was not running)
	$(call with_localstack,$(MAKE) --no-print-directory soak-run)

# The full soak runs on the release binaries: what ships.
soak-run:
	@$(MAKE) --no-print-directory deploy-local PROFILE=release
	@mkdir -p $(TARGET_DIR)/bench
	cargo run --quiet -p busline-tests --example soak

# strace and valgrind, which tests/tests/init_cost.rs counts a function's init with (files opened,
# instructions), from Debian's packages when the machine has neither.
tracers:
	@command -v strace >/dev/null && command -v valgrind >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq strace valgrind >/dev/null; }

# What deploy-local deploys, built (`make test` builds it while the installs run).
build:
	cargo build --profile $(PROFILE) $(DEPLOY_BUILD)

deploy-local: tools localstack-start build ## Build the functions and deploy template.yaml to LocalStack (code changes hot-reload; PROFILE=release deploys release builds)
	@for f in $(FUNCTIONS); do \
	  mkdir -p $(STATE)/functions/$$f; \
	  cp $(TARGET_DIR)/$(PROFILE_DIR)/$$f $(STATE)/functions/$$f/bootstrap.new; \
	  mv -f $(STATE)/functions/$$f/bootstrap.new $(STATE)/functions/$$f/bootstrap; \
	done
	$(TOOLS)/bin/python infra/localstack/local_template.py template.yaml $(STATE)/functions > $(STATE)/template.local.json
	$(TOOLS)/bin/sam deploy --config-file $(CURDIR)/samconfig.toml --config-env localstack --template-file $(STATE)/template.local.json
	$(TOOLS)/bin/python infra/localstack/prune_rules.py busline EventBusName

# The way to AWS, from a checkout after `make demo`: `sam build` runs cargo-lambda for each function
# (arm64, release profile) and `sam deploy` takes samconfig.toml's [default] (it shows the change set
# and asks). SAM_ARGS goes to both commands' shared options, DEPLOY_ARGS to sam deploy alone (for
# example --no-execute-changeset, or --guided the first time).
deploy: tools $(TOOLS)/lambda/.installed ## Build every function for arm64 with cargo-lambda (sam build) and deploy template.yaml to AWS with your credentials (sam deploy, samconfig.toml [default])
	rustup target add aarch64-unknown-linux-gnu
	env $(AWS_DEFAULTS_UNSET) PATH="$(TOOLS)/bin:$$PATH" $(TOOLS)/bin/sam build --config-file $(CURDIR)/samconfig.toml $(SAM_ARGS)
	env $(AWS_DEFAULTS_UNSET) PATH="$(TOOLS)/bin:$$PATH" $(TOOLS)/bin/sam deploy --config-file $(CURDIR)/samconfig.toml $(SAM_ARGS) $(DEPLOY_ARGS)

lint-template: tools ## cfn-lint, sam validate --lint, that the dashboard and alarms cover every function and queue, and checkov (suppressions in each resource's Metadata); all offline
	$(TOOLS)/bin/cfn-lint template.yaml
	$(TOOLS)/bin/sam validate --lint
	$(TOOLS)/bin/python infra/lint/observability.py template.yaml
	@# --skip-download: no Prisma Cloud look-ups; CKV_SKIP_PACKAGE_UPDATE_CHECK: no PyPI version check.
	CKV_SKIP_PACKAGE_UPDATE_CHECK=true $(TOOLS)/checkov/bin/checkov -f template.yaml --framework cloudformation --quiet --compact --skip-download

tools: $(TOOLS)/.installed $(TOOLS)/checkov/.installed $(TOOLS)/interop/.installed ## The template linters, and the webhook libraries the interop tests check busline against, in venvs under .state/tools

$(TOOLS)/.installed: Makefile
	@test -n "$(PYTHON)" || { echo "Python 3.13 or later is required (on PATH, or under pyenv)"; exit 1; }
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check 'aws-sam-cli==1.*' 'cfn-lint==1.*'
	touch $@

# checkov pins boto3 exactly, which the SAM CLI's own needs rule out: a venv of its own.
$(TOOLS)/checkov/.installed: Makefile | $(TOOLS)/.installed
	@test -n "$(PYTHON)" || { echo "Python 3.13 or later is required (on PATH, or under pyenv)"; exit 1; }
	$(PYTHON) -m venv $(TOOLS)/checkov
	$(TOOLS)/checkov/bin/pip install --quiet --disable-pip-version-check 'checkov==3.*'
	touch $@

# cargo-lambda, and the zig toolchain it cross-compiles and links arm64 with (ziglang), for make deploy.
$(TOOLS)/lambda/.installed: Makefile | $(TOOLS)/.installed
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check 'cargo-lambda==1.*'
	mkdir -p $(dir $@) && touch $@

# Code busline did not write, on the other side of its signatures (tests/src/interop.rs).
$(TOOLS)/interop/.installed: Makefile | $(TOOLS)/.installed
	$(PYTHON) -m venv $(TOOLS)/interop
	$(TOOLS)/interop/bin/pip install --quiet --disable-pip-version-check 'standardwebhooks==1.*' 'stripe==16.*'
	touch $@

localstack-start: ## Install (once) and start LocalStack on the host, without Docker
	$(LOCALSTACK) start

localstack-install:
	$(LOCALSTACK) install

localstack-stop: ## Stop LocalStack
	$(LOCALSTACK) stop

localstack-status: ## Is LocalStack up?
	$(LOCALSTACK) status

bench: ## One performance report (target/bench/report.md, .json): cold start, RSS and size of every function; in-process throughput beside serde_json; DynamoDB calls per message; latency end to end on LocalStack
	@mkdir -p $(TARGET_DIR)/bench && rm -f $(TARGET_DIR)/bench/*.json && touch $(TARGET_DIR)/bench/.started
	$(call with_localstack,$(MAKE) --no-print-directory bench-run)

# The benchmark harnesses that drive LocalStack need no optimisation (`--profile dev`): its latency
# dwarfs theirs. The stack they drive runs the release binaries, as a deployment does (a debug
# build's handlers took 3-10× as long), and the criterion benchmarks are built with the release
# profile the functions ship with.
bench-run: release release-arm64
	@$(MAKE) --no-print-directory deploy-local PROFILE=release
	cargo bench --profile dev -p busline-tests --bench cold_start  # every function, beside a hello world
	cargo bench --profile dev -p busline-tests --bench idempotency_store  # DynamoDB calls per message
	cargo bench --profile dev -p busline-tests --bench pipelines  # ingest → consumer, CDC write → bus
	cargo bench --profile dev -p busline-tests --bench saga  # 50 orders end to end, and where the time goes
	cargo bench --profile dev -p busline-tests --bench delivery  # 200 events through deliver-webhook, per hop
	cargo bench --profile dev -p busline-tests --bench batch_sync  # 10,000 records from a stub source to the bus
	@# The full soak: its section is written (and the report marks what it missed) even when it fails.
	cargo run --quiet -p busline-tests --example soak || echo "bench: the soak broke a promise; its section says which"
	cargo bench -p busline --bench toolkit -p cdc-stream --bench cdc -p mdm-customer --bench merge -p translate --bench translate -- --warm-up-time 1 --measurement-time 3
	cargo run --quiet -p busline-tests --bin bench-report

profile-init: deploy-local ## Callgrind profile of a function's init (cold start) with its deployed environment: make profile-init FUNCTION=split
	@test -n "$(FUNCTION)" || { echo "usage: make profile-init FUNCTION=<name>"; exit 1; }
	@command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)"; exit 1; }
	cargo build --profile profiling -p $(FUNCTION) --bins
	@# The runtime's first call goes to a closed port and fails: the profile is the init alone.
	$(TOOLS)/bin/python infra/bench/with_function_env.py busline $(FUNCTION) \
	  valgrind -q --tool=callgrind --callgrind-out-file=$(STATE)/callgrind.$(FUNCTION) \
	  $(TARGET_DIR)/profiling/$(FUNCTION) >/dev/null || true
	callgrind_annotate --inclusive=yes $(STATE)/callgrind.$(FUNCTION) | sed -n '/PROGRAM TOTALS/,$$p' | sed -n 1,60p
	@echo "Whole profile: $(STATE)/callgrind.$(FUNCTION) (callgrind_annotate, kcachegrind)"

profile-toolkit: ## Callgrind instruction counts of the toolkit's batch path per message (SQS batch of ten, idempotency, in-memory store) beside serde_json's parse-and-serialise and a bare loop over the handler
	@command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)"; exit 1; }
	cargo bench --profile profiling -p busline --bench toolkit --no-run
	@bin=$$(ls -t $(TARGET_DIR)/profiling/deps/toolkit-* | grep -v '\.d$$' | head -n1); \
	for path in setup baseline loop processor; do \
	  TOOLKIT_PROFILE=$$path valgrind -q --tool=callgrind --callgrind-out-file=$(STATE)/callgrind.toolkit.$$path $$bin >/dev/null || exit 1; \
	done; \
	setup=$$(sed -n 's/^summary: //p' $(STATE)/callgrind.toolkit.setup); \
	base=$$(sed -n 's/^summary: //p' $(STATE)/callgrind.toolkit.baseline); \
	for path in baseline loop processor; do \
	  total=$$(sed -n 's/^summary: //p' $(STATE)/callgrind.toolkit.$$path); \
	  echo "$$path: $$(( (total - setup) / 2000 )) instructions per message, $$(awk "BEGIN { printf \"%.2f\", ($$base - $$setup) / ($$total - $$setup) }")× the baseline's speed"; \
	done
	@echo "Profiles: $(STATE)/callgrind.toolkit.<path> (callgrind_annotate --inclusive=yes)"

release: ## Release build of every function (LTO, stripped), and the hello world the benchmarks compare them with
	cargo build --release $(addprefix -p ,$(FUNCTIONS)) -p hello-lambda --bins

# What SAM ships (template.yaml's Architectures), built the way `sam build` builds it: cargo-lambda
# cross-compiling with zig, the release profile. The benchmark reports these sizes beside x86_64's.
release-arm64: $(TOOLS)/lambda/.installed ## Release build of every function for arm64 (cargo-lambda, zig), as SAM ships them
	rustup target add aarch64-unknown-linux-gnu
	PATH="$(TOOLS)/bin:$$PATH" $(TOOLS)/bin/cargo-lambda lambda build --release --arm64 $(addprefix -p ,$(FUNCTIONS))

sizes: release ## Release binary sizes (goal: at most 8 MB each)
	@for bin in $$(ls functions); do \
	  printf '%-24s %s bytes\n' $$bin $$(stat -c %s $${CARGO_TARGET_DIR:-target}/release/$$bin); \
	done

redrive: localstack-start ## List each dead-letter queue's letters with their reasons; ARGS="move <queue> --error-type T" redrives chosen ones
	cargo run --quiet -p busline --features redrive --bin redrive -- $(ARGS)

clean: localstack-stop ## Stop LocalStack and remove build output and local state
	cargo clean
	rm -rf $(STATE)
