# kata-deploy: `make test` runs every test (unit and end to end, against a real Docker engine).
GO          ?= go
STATICCHECK ?= $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2
BIN         ?= bin
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT      ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS     := -s -w -X github.com/kata-deploy/kata-deploy/internal/version.Version=$(VERSION) \
               -X github.com/kata-deploy/kata-deploy/internal/version.Commit=$(COMMIT)

.PHONY: all build demo bench soak test unit conformance lint engine-up engine-down clean packages release release-image image plugin-bundle

all: build

# kata-deploy, the shim, and the guest agent (static: it is /init in the guest's initrd).
build:
	$(GO) build -trimpath -buildvcs=false -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/kata-deploy ./cmd/containerd-shim-kata-v2 ./cmd/kata-guest-image ./cmd/kata-plugins
	CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=false -ldflags '-s -w -X main.version=$(VERSION)' -o $(BIN)/ ./cmd/kata-agent

# Distribution packages: dist/kata-deploy_<version>_amd64.deb and kata-deploy-<version>.x86_64.rpm
# (packaging/distro, with nfpm), from the binaries of `make build`; every file's time is the
# commit's (SOURCE_DATE_EPOCH), so the same commit gives the same bytes.
DIST              ?= dist
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null)
KATA_PACKAGES     := $(GO) run ./packaging/cmd/kata-packages -version '$(VERSION)' -source-date-epoch '$(SOURCE_DATE_EPOCH)'
packages: build
	$(KATA_PACKAGES) -bin $(BIN) -out $(DIST)

# A release folder: reproducible binaries (-trimpath, no VCS stamp, version from git), the
# packages, the installer image archive (release-image), whatever the targets in RELEASE_EXTRA
# add to $(RELEASE_DIR), then SHA256SUMS over all of it. Two runs on the same commit give
# identical bytes.
RELEASE_DIR   ?= $(DIST)/release
RELEASE_EXTRA ?=
release:
	rm -rf '$(RELEASE_DIR)' '$(RELEASE_DIR).bin'
	$(MAKE) build BIN='$(RELEASE_DIR).bin'
	$(KATA_PACKAGES) -bin '$(RELEASE_DIR).bin' -out '$(RELEASE_DIR)'
	$(MAKE) release-image RELEASE_DIR='$(RELEASE_DIR)'
	$(if $(RELEASE_EXTRA),$(MAKE) $(RELEASE_EXTRA) RELEASE_DIR='$(RELEASE_DIR)' BIN='$(RELEASE_DIR).bin')
	$(GO) run ./packaging/cmd/kata-packages -sums -out '$(RELEASE_DIR)'
	rm -rf '$(RELEASE_DIR).bin'

# The installer image as an OCI archive, $(RELEASE_DIR)/kata-deploy-image_<version>_amd64.oci.tar
# (`docker load -i` tags it kata-deploy:<version>): what `make image` builds (static binaries and
# hack/image.sh's guest kernel package), written by packaging/ociarchive without a container
# engine, every time the commit's, so it is reproducible.
release-image:
	rm -rf '$(RELEASE_DIR).image'
	mkdir -p '$(RELEASE_DIR)'
	CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=false -ldflags '$(LDFLAGS)' -o '$(RELEASE_DIR).image/' ./cmd/kata-deploy ./cmd/containerd-shim-kata-v2 ./cmd/kata-plugins
	CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=false -ldflags '-s -w -X main.version=$(VERSION)' -o '$(RELEASE_DIR).image/' ./cmd/kata-agent
	kernel=$$(hack/image.sh --kernel) && $(KATA_PACKAGES) -revision '$(COMMIT)' -bin '$(RELEASE_DIR).image' -image-kernel "$$kernel" -out '$(RELEASE_DIR)'
	rm -rf '$(RELEASE_DIR).image'

# The kata-block volume driver as a Docker managed plugin: $(DIST)/plugin-bundle/{config.json,rootfs}
# (packaging/pluginbundle: a static kata-plugins and this machine's mkfs/fsck/mount with their
# libraries), for `docker plugin create kata-deploy/kata-block $(DIST)/plugin-bundle`, offline.
plugin-bundle:
	CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=false -ldflags '$(LDFLAGS)' -o '$(BIN)/static/' ./cmd/kata-plugins
	$(GO) run ./packaging/cmd/kata-plugin-bundle -plugins '$(BIN)/static/kata-plugins' -out '$(DIST)/plugin-bundle'

# A newcomer's first run: test engine up, kata-deploy install into it, a container in a VM.
demo:
	hack/demo.sh

# Start-up and memory figures: runc, kata, kata from a VM template and a bare-VM floor, interleaved, and the host memory
# of 1 to 20 idle VM containers; rewrites docs/benchmarks.md and docs/bench/*.png (test engine,
# root; about 15 minutes on 2 cores under TCG). Holds the VM lock, so no other VM test skews it.
# BENCH_FLAGS='-max-kata-floor-ratio 1.3 -max-pool-runc-ratio 2 -max-template-pss-mib 64' fails
# the run on a missed target.
BENCH_RUNS  ?= 10
BENCH_FLAGS ?=
bench:
	. "$$(hack/engine.sh up)" && flock /run/kata-e2e.lock $(GO) run ./bench/startup -n $(BENCH_RUNS) -template -pool -template-tb 20 \
		-density 1,5,10,20 -trace -report docs/benchmarks.md $(BENCH_FLAGS)

# Reliability: 200 kata containers in a row and 10 at once, then faults, then nothing may be left
# (bench/soak, on a dedicated engine instance). CI runs it smaller: SOAK_FLAGS='-n 20 -parallel 5 -faults'.
SOAK_FLAGS ?= -n 200 -parallel 10 -faults
soak:
	hack/soak.sh $(SOAK_FLAGS)

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

# The installer image (Dockerfile): static binaries and a guest kernel package FROM scratch,
# built by the docker of the environment (e.g. the test engine: . "$$(hack/engine.sh up)").
IMAGE ?= kata-deploy:$(VERSION)
image:
	VERSION=$(VERSION) hack/image.sh $(IMAGE) $(BIN)/image

engine-up:
	hack/engine.sh up

engine-down:
	hack/engine.sh down

clean:
	rm -rf $(BIN) $(DIST)
