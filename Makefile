# Thin wrappers around the scripts, which do the work (and install what they need).
.PHONY: run test build bench bench-smoke install uninstall

# Serve the dashboard with 8 demo workers on http://127.0.0.1:8080/ (make run ARGS="--port 9000").
run:
	./scripts/run.sh $(ARGS)

# Every Swift suite and the end-to-end tests (make test ARGS="-k reconnect" filters the e2e tests).
test:
	./scripts/test.sh $(ARGS)

# The release build that `make run` serves.
build:
	./scripts/run.sh --build-only

# The fan-out benchmark (Benchmarks/README.md): the full run wants a quiet machine.
bench:
	Benchmarks/tailgate-bench $(ARGS)

bench-smoke:
	Benchmarks/tailgate-bench --smoke $(ARGS)

# Installs the gateway as a service would run it (docs/DEPLOY.md, "Install and run as a service"):
# a release build with the Swift standard library linked in, to $(PREFIX)/bin/tailgate, and the
# browser UI to $(PREFIX)/share/tailgate/Public, where the binary finds it from any working directory
# (and the documents to $(PREFIX)/share/doc/tailgate).
# make install PREFIX=/opt/tailgate; DESTDIR= stages the files for a package.
PREFIX ?= /usr/local
DESTDIR ?=
INSTALL_SCRATCH ?= .build-install
SWIFT_RELEASE = swift build -c release --static-swift-stdlib --product tailgate --scratch-path $(INSTALL_SCRATCH)

install:
	$(SWIFT_RELEASE)
	install -d "$(DESTDIR)$(PREFIX)/bin" "$(DESTDIR)$(PREFIX)/share/tailgate"
	install -m 0755 "$$($(SWIFT_RELEASE) --show-bin-path)/tailgate" "$(DESTDIR)$(PREFIX)/bin/tailgate"
	rm -rf "$(DESTDIR)$(PREFIX)/share/tailgate/Public"
	cp -R Public "$(DESTDIR)$(PREFIX)/share/tailgate/Public"
	chmod -R u=rwX,go=rX "$(DESTDIR)$(PREFIX)/share/tailgate/Public"
	install -d "$(DESTDIR)$(PREFIX)/share/doc/tailgate"
	install -m 0644 README.md docs/DEPLOY.md docs/PROTOCOL.md "$(DESTDIR)$(PREFIX)/share/doc/tailgate/"
	@echo "installed $(DESTDIR)$(PREFIX)/bin/tailgate ($$("$(DESTDIR)$(PREFIX)/bin/tailgate" --version)) and $(DESTDIR)$(PREFIX)/share/tailgate/Public"

uninstall:
	rm -f "$(DESTDIR)$(PREFIX)/bin/tailgate"
	rm -rf "$(DESTDIR)$(PREFIX)/share/tailgate" "$(DESTDIR)$(PREFIX)/share/doc/tailgate"
