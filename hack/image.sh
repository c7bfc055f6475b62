#!/usr/bin/env bash
# Builds the installer image (`make image`): static kata-deploy, shim, agent and kata-plugins plus a guest kernel
# package in a build context of their own, assembled FROM scratch by the top-level Dockerfile, so
# nothing is pulled. Uses the docker CLI and daemon of the environment (DOCKER_HOST).
#
#   hack/image.sh IMAGE [CONTEXT_DIR]
#   hack/image.sh --kernel     prints the guest kernel package the image gets (`make release`)
#
# IMAGE_KERNEL=linux-image-*.deb names the guest kernel package; by default the one kata-deploy
# install fetched (/var/cache/kata-deploy/kernel) or the tests' (/var/cache/kata-deploy/test/kernel),
# else Debian's, fetched with apt-get download.
set -euo pipefail
cd "$(dirname "$0")/.."

find_kernel() {
	if [ -n "${IMAGE_KERNEL:-}" ]; then
		printf '%s\n' "$IMAGE_KERNEL"
		return
	fi
	local d f
	for d in /var/cache/kata-deploy/kernel /var/cache/kata-deploy/test/kernel; do
		for f in "$d"/linux-image-*.deb; do
			[ -f "$f" ] && { printf '%s\n' "$f"; return; }
		done
	done
	# The package Debian's generic kernel metapackage depends on, as install picks it.
	local pkg
	pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
	[ -n "$pkg" ] || { echo "image: no kernel package found: set IMAGE_KERNEL=linux-image-*.deb" >&2; exit 1; }
	mkdir -p /var/cache/kata-deploy/kernel
	(cd /var/cache/kata-deploy/kernel && apt-get download -qq "$pkg" >&2)
	ls /var/cache/kata-deploy/kernel/"$pkg"_*.deb
}

if [ "${1:-}" = --kernel ]; then
	find_kernel
	exit
fi
image=${1:?usage: hack/image.sh IMAGE [CONTEXT_DIR] | --kernel}
ctx=${2:-bin/image}
version=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
commit=$(git rev-parse HEAD 2>/dev/null || true)

rm -rf "$ctx"
mkdir -p "$ctx"
ldflags="-s -w -X github.com/kata-deploy/kata-deploy/internal/version.Version=$version -X github.com/kata-deploy/kata-deploy/internal/version.Commit=$commit"
# Static: the image has no libc (and the agent is the guest's /init).
CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$ctx/" ./cmd/kata-deploy ./cmd/containerd-shim-kata-v2 ./cmd/kata-plugins
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$version" -o "$ctx/" ./cmd/kata-agent
kernel=$(find_kernel)
cp "$kernel" "$ctx/"
# The legacy builder is enough for FROM scratch + COPY, and is what an engine without BuildKit has.
DOCKER_BUILDKIT=0 docker build -q -f Dockerfile --label "org.opencontainers.image.version=$version" \
	--label "org.opencontainers.image.revision=$commit" -t "$image" "$ctx" >/dev/null
size=$(du -sm "$ctx" | cut -f1)
echo "image: $image built: ${size} MB unpacked (kata-deploy, shim, agent, kata-plugins, $(basename "$kernel"))"
