#!/usr/bin/env bash
# `make soak`: many kata containers started and removed in a row and at once, then faults (QEMU
# killed, shim killed, dockerd restarted with and without live-restore, containerd restarted), then
# a check that nothing is left behind (bench/soak). The faults restart the engine's daemons, so it
# runs on a dedicated engine instance (KATA_TEST_ENGINE_INSTANCE=soak, its own network namespace),
# taken down again at the end. Arguments go to bench/soak (-n, -parallel, -faults).
set -euo pipefail
cd "$(dirname "$0")/.."

export KATA_TEST_ENGINE_INSTANCE=soak
trap 'hack/engine.sh down || true' EXIT
env_file=$(hack/engine.sh up)
# shellcheck disable=SC1090
. "$env_file"
go run ./bench/soak "$@"
