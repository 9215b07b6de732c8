# Thin wrappers around the scripts, which do the work (and install what they need).
.PHONY: run test build bench bench-smoke

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
