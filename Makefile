# istio-federation-hook — see README.md.
CARGO ?= cargo

.PHONY: all build static demo demo-snapshot test test-deps test-platform platform lint golden bench clean

all: build

build:
	$(CARGO) build --release

## static: a statically linked release binary, printed path last. musl (as in the Dockerfile) when
## the target is installed (`rustup target add x86_64-unknown-linux-musl`, plus Debian's
## musl-tools for ring's C parts); otherwise glibc with crt-static. scripts/check-static.sh checks it.
MUSL_TARGET := x86_64-unknown-linux-musl
GNU_TARGET := x86_64-unknown-linux-gnu
static:
	@if rustup target list --installed 2>/dev/null | grep -qx $(MUSL_TARGET); then \
		$(CARGO) build --release --locked --target $(MUSL_TARGET) && \
		echo target/$(MUSL_TARGET)/release/istio-federation-hook; \
	else \
		echo "make static: $(MUSL_TARGET) is not installed; building a static glibc binary" >&2; \
		RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build --release --locked --target $(GNU_TARGET) && \
		echo target/$(GNU_TARGET)/release/istio-federation-hook; \
	fi

## demo: two demo clusters federating on 127.0.0.1 (each with its own serve over TLS), printing what each side creates
demo: build
	$(CARGO) run --quiet --example demo

## demo-snapshot: the discovery hook on a bundled snapshot with cached peer metadata
demo-snapshot: build
	./scripts/demo.sh

## The release binary the real-platform suites run under shell-operator and as `serve`.
HOOK_RELEASE_BIN = $(abspath $(or $(CARGO_TARGET_DIR),target))/release/istio-federation-hook

## test: every test (unit, golden, CLI contract, integration, the real platform); UPDATE_GOLDEN=1
## regenerates golden files. scripts/test-deps.sh first installs what the tests use (as root) or
## names the one command to run; tests/platform/build.sh builds the real platform's components
## from their pinned Go modules once (tests/platform/versions.env; cached outside the tree); the
## platform suites run the release binary, as users do.
test:
	scripts/test-deps.sh
	tests/platform/build.sh
	$(CARGO) build --release
	PLATFORM_BIN_DIR="$$(tests/platform/build.sh --dir)" PLATFORM_HOOK_BIN="$(HOOK_RELEASE_BIN)" $(CARGO) test --all-targets

## platform: build (or find cached) the real platform's components and print their versions
platform:
	tests/platform/build.sh

## test-platform: only the suites against the real platform (tests/platform.rs, tests/platform_authz.rs,
## tests/platform_deckhouse.rs, tests/platform_crd.rs)
test-platform: platform build
	PLATFORM_BIN_DIR="$$(tests/platform/build.sh --dir)" PLATFORM_HOOK_BIN="$(HOOK_RELEASE_BIN)" $(CARGO) test --test platform --test platform_authz --test platform_deckhouse --test platform_crd

test-deps:
	@scripts/test-deps.sh

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
