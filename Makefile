# image-gateway: the two commands a newcomer needs are `make run` and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
# Debian packages the test suite uses: a real Prometheus (promtool too), docker-compose's
# config checker, wrk for the benchmark, and redis-server for the shared state store; the
# Real-ESRGAN extra's libraries (libvulkan1, libomp5-14) and Mesa's software Vulkan device
# (mesa-vulkan-drivers), which the GPU check must refuse; tinyproxy (a real forward proxy
# for the transport's proxy tests).
APT_PACKAGES := prometheus docker-compose wrk redis-server libvulkan1 libomp5-14 mesa-vulkan-drivers tinyproxy
# The generated clients (tests/contract): Go, Java 17 with the jars the native library
# needs (Debian's, since no Maven repository is reachable), Node for TypeScript.
APT_PACKAGES += golang-go openjdk-17-jdk-headless nodejs libjackson2-databind-java \
  libjackson2-core-java libjackson2-annotations-java libjsr305-java \
  libgeronimo-annotation-1.3-spec-java libhttpmime-java
LINT_PATHS := $(wildcard app tests bench scripts deploy)

# The official OpenAI Node SDK, pinned in tests/sdk/node (package-lock.json), for the SDK tests.
NODE_SDK := tests/sdk/node

.PHONY: run test lint typecheck unit install install-dev system-deps node-deps client-deps openapi prices-doc bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -e .

install-dev: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'

run: install
	$(BIN)/image-gateway

# Installs the Debian packages the suite needs when they are missing (needs root or sudo).
system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

# Node.js 20+ and npm come with this project's machine image; this installs the pinned SDK
# once (node_modules is ignored by git).
node-deps:
	@command -v npm >/dev/null || { echo "npm (Node.js 20+) is needed by the OpenAI Node SDK tests"; exit 1; }
	@[ -f $(NODE_SDK)/node_modules/openai/package.json ] || (cd $(NODE_SDK) && npm ci --no-audit --no-fund --loglevel=error)

# The TypeScript compiler for the generated TypeScript client, pinned by its lock file.
client-deps: clients/typescript/node_modules/.package-lock.json

clients/typescript/node_modules/.package-lock.json: clients/typescript/package-lock.json
	cd clients/typescript && npm ci --no-audit --no-fund --loglevel=error

lint: install-dev
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)

typecheck: install-dev
	$(BIN)/mypy app

unit: install-dev
	$(BIN)/pytest -q

test: system-deps install-dev node-deps client-deps
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy app
	$(BIN)/pytest -q

openapi: install
	$(BIN)/python scripts/export_openapi.py

prices-doc: install
	$(BIN)/python scripts/render_prices.py

bench: system-deps install-dev
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache $(NODE_SDK)/node_modules .cache clients/typescript/node_modules
