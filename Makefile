# kata-deploy: `make test` runs every test (unit and end to end, against a real Docker engine).
GO          ?= go
STATICCHECK ?= $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2
BIN         ?= bin
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT      ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS     := -s -w -X github.com/kata-deploy/kata-deploy/internal/version.Version=$(VERSION) \
               -X github.com/kata-deploy/kata-deploy/internal/version.Commit=$(COMMIT)

.PHONY: all build demo bench test unit conformance lint engine-up engine-down clean

all: build

# kata-deploy, the shim, and the guest agent (static: it is /init in the guest's initrd).
build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/kata-deploy ./cmd/containerd-shim-kata-v2 ./cmd/kata-guest-image ./cmd/kata-plugins
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w -X main.version=$(VERSION)' -o $(BIN)/ ./cmd/kata-agent

# A newcomer's first run: test engine up, kata-deploy install into it, a container in a VM.
demo:
	hack/demo.sh

# Start-up and memory figures: kata vs runc vs the bare-VM floor (needs the test engine and root).
bench:
	. "$$(hack/engine.sh up)" && $(GO) run ./bench/startup -n 10

# Every test: brings the test engine up (idempotent), then unit and end-to-end tests.
test:
	hack/test.sh

# Docker's own integration tests (moby's integration/container and integration/volume at the
# engine's version) against a dedicated engine instance whose default runtime is kata; the lists
# in tests/conformance say what is not run and which failures are expected.
# CONFORMANCE_FLAGS='-runtime runc' runs the same selection under runc.
CONFORMANCE_FLAGS ?=
conformance:
	hack/conformance.sh $(CONFORMANCE_FLAGS)

# Unit tests only: no root, no engine, no VM.
unit:
	$(GO) test -short ./...

# Static checks: formatting, go vet, staticcheck (pinned; fetched through the module proxy and
# cached), and go.mod/go.sum exactly as `go mod tidy` leaves them.
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum are not tidy: run go mod tidy"; exit 1; }

engine-up:
	hack/engine.sh up

engine-down:
	hack/engine.sh down

clean:
	rm -rf $(BIN)
