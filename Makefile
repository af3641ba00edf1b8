# fstore: `make run` serves on port 8002 with the embedded defaults under ./data;
# `make test` installs what is missing, builds and runs every test.
SHELL := /bin/bash
JOBS ?= $(shell nproc)
BUILD ?= build
PORT ?= 8002
DATA_DIR ?= ./data
FUZZ_SECONDS ?= 20
CMAKE_FLAGS ?=

.PHONY: all deps build run test unit-test asan-test fuzz-test integration-test bench clean

all: build

deps:
	@bash scripts/install-deps.sh

$(BUILD)/build.ninja: CMakeLists.txt | deps
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS)

build: deps $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS)

run: build
	mkdir -p $(DATA_DIR)
	exec $(BUILD)/fstore serve --port $(PORT) --data-dir $(DATA_DIR)

# Every test: unit tests, the same under ASan+UBSan, the fuzzers briefly, then
# the integration tests against the real binary.
test: build
	bash scripts/run-tests.sh all

unit-test: build
	bash scripts/run-tests.sh unit

asan-test: deps
	bash scripts/run-tests.sh asan

fuzz-test: deps
	bash scripts/run-tests.sh fuzz

integration-test: build
	bash scripts/run-tests.sh integration

clean:
	rm -rf $(BUILD) build-asan build-fuzz
