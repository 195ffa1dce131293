# atex: the helpers a person (and CI) uses. `make help` lists the targets.

# The shared corpus and benchmark tools sit beside the project root; override
# with `make SHARED=/path/to/shared ...` when the checkout is elsewhere.
SHARED ?= $(CURDIR)/../shared
CARGO ?= cargo
# nextest's CI profile (.config/nextest.toml) when CI is set.
NEXTEST_ARGS ?= $(if $(CI),--profile ci,)
# make install: where (DESTDIR is prepended, for packagers) and which build
# (PROFILE=debug installs the test build without a release build).
PREFIX ?= /usr/local
DESTDIR ?=
PROFILE ?= release
TOOLS = atex-discover atex-provision atex-exec atex-aggregate atex-orchestrate

.PHONY: help demo install sut-image vm-image deps test nextest doctest conformance lint bench bench-exec bench-orchestrate bench-aggregate bench-venv compare-tmt

# help: list the targets with their one-line descriptions
help:
	@grep -B1 -E '^[a-z-]+:' Makefile | grep -E '^# [a-z-]+:' | sed 's/^# //'

# demo: build, run the bundled examples/ tree through atex-orchestrate on this machine (the default `local` provisioner), store the results in target/demo-store (index.html, junit.xml), then print the store's summary
demo:
	$(CARGO) build --release -p atex-orchestrate -p atex-aggregate
	rm -rf target/demo-artifacts target/demo-store
	./target/release/atex-orchestrate --root examples --output target/demo-store --artifacts target/demo-artifacts
	./target/release/atex-aggregate summary target/demo-store

# install: build the five tools and install them into $(DESTDIR)$(PREFIX) (default /usr/local): bin/, a man page per tool and subcommand (share/man/man1), bash, zsh and fish completions
install:
	$(CARGO) build $(if $(filter release,$(PROFILE)),--release,) $(addprefix -p ,$(TOOLS))
	rm -rf target/xtask
	$(CARGO) run -q $(if $(filter release,$(PROFILE)),--release,) -p xtask -- target/xtask
	install -d "$(DESTDIR)$(PREFIX)/bin" "$(DESTDIR)$(PREFIX)/share/man/man1" \
		"$(DESTDIR)$(PREFIX)/share/bash-completion/completions" \
		"$(DESTDIR)$(PREFIX)/share/zsh/site-functions" \
		"$(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d"
	install -m 755 $(addprefix target/$(PROFILE)/,$(TOOLS)) "$(DESTDIR)$(PREFIX)/bin/"
	install -m 644 target/xtask/man/man1/*.1 "$(DESTDIR)$(PREFIX)/share/man/man1/"
	install -m 644 target/xtask/completions/bash/* "$(DESTDIR)$(PREFIX)/share/bash-completion/completions/"
	install -m 644 target/xtask/completions/zsh/* "$(DESTDIR)$(PREFIX)/share/zsh/site-functions/"
	install -m 644 target/xtask/completions/fish/* "$(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/"

# sut-image: build localhost/sut, a small Debian image (mmdebstrap, then podman import) for `podman --image localhost/sut` (python3, rsync, sshd, systemd)
sut-image:
	bash scripts/sut-image.sh localhost/sut

# vm-image: build once (cached in ~/.cache/atex/vm-image) a small Debian guest disk, kernel, initrd and key for virtual machines; the last line printed is the options that boot it
vm-image:
	@bash scripts/vm-image.sh

# deps: install what the tests need when it is missing (cargo-nextest, python3, GNU time)
deps:
	bash scripts/install-deps.sh

# test: install what is missing, then run every test: fmf conformance, doc tests, unit and integration (nextest)
test: deps conformance doctest nextest

# nextest: the unit and integration tests of the whole workspace
nextest:
	$(CARGO) nextest run --workspace $(NEXTEST_ARGS)

# doctest: the rustdoc examples (nextest does not run them)
doctest:
	$(CARGO) test --workspace --doc

# conformance: the fmf conformance corpus of ../shared against the release atex-discover (only documented quirks may differ)
conformance:
	$(CARGO) build --release -p atex-discover
	SHARED="$(SHARED)" bash scripts/conformance.sh -q

# lint: formatting, clippy with warnings as errors, and warning-free rustdoc
lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps

.PHONY: fuzz
FUZZ_SECONDS ?= 120
FUZZ_SEED ?= random
# fuzz: replay the fuzz corpus, then mutate it with a new seed for FUZZ_SECONDS (120) per target: control stream, record lines, fmf YAML; failing inputs go to fuzz/artifacts/
fuzz:
	ATEX_FUZZ_SECONDS=$(FUZZ_SECONDS) ATEX_FUZZ_SEED=$(FUZZ_SEED) $(CARGO) nextest run -p atex-fuzz -E 'binary(fuzz)' --success-output immediate

# bench: time atex-discover on a generated 10,000-test tree (and python fmf, if .venv-fmf exists), then atex-exec (bench-exec), atex-orchestrate (bench-orchestrate), atex-aggregate (bench-aggregate); each prints its figures and targets, and a missed target fails the make after all have run
bench:
	@status=0; for b in discover exec orchestrate aggregate; do \
		SHARED="$(SHARED)" bash bench/$$b.sh || status=1; \
	done; exit $$status

# bench-exec: run 200 trivial tests and one test reporting 1,000,000 results on a loopback sshd machine; tests/s and CPU per test beside Python ATEX 1.2 (make bench-venv), results/s, peak RSS
bench-exec:
	SHARED="$(SHARED)" bash bench/exec.sh

# bench-orchestrate: 200 trivial tests through atex-orchestrate on 4 loopback sshd machines, then through Python ATEX 1.2 on the same machines (tests/s, CPU per test, the ratio); then 50 sleeping tests at once on 50 machines (memory per running test, both)
bench-orchestrate:
	SHARED="$(SHARED)" bash bench/orchestrate.sh

# bench-aggregate: ingest 1,000,000 result records into a results store; records/s and peak RSS
bench-aggregate:
	SHARED="$(SHARED)" bash bench/aggregate.sh

# compare-tmt: compare test selection with tmt 1.78 on a generated 500-test tree (installs tmt into .venv-fmf)
compare-tmt:
	SHARED="$(SHARED)" bash scripts/compare-tmt.sh

# bench-venv: install python fmf 1.7.0 into .venv-fmf and Python ATEX 1.2 into .venv-atex so `make bench` compares with them
bench-venv:
	bash scripts/install-deps.sh --fmf-venv
