# istio-federation-hook — see README.md.
CARGO ?= cargo

.PHONY: all build demo demo-snapshot test lint golden bench clean

all: build

build:
	$(CARGO) build --release

## demo: two demo clusters federating on 127.0.0.1 (each with its own serve over TLS), printing what each side creates
demo: build
	$(CARGO) run --quiet --example demo

## demo-snapshot: the discovery hook on a bundled snapshot with cached peer metadata
demo-snapshot: build
	./scripts/demo.sh

## test: every test (unit, golden, CLI contract, integration); UPDATE_GOLDEN=1 regenerates golden files
test:
	$(CARGO) test --all-targets

## lint: formatting and clippy, warnings are errors
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

## golden: regenerate the golden files (review the diff by hand before committing)
golden:
	UPDATE_GOLDEN=1 $(CARGO) test --test golden

bench:
	$(CARGO) bench

clean:
	$(CARGO) clean
