#!/usr/bin/env bash
# `make conformance`: Docker's own integration tests (moby's integration/container and
# integration/volume, at the test engine's pinned version) against a dedicated engine instance
# (hack/engine.sh with KATA_TEST_ENGINE_INSTANCE=conformance: own state, sockets, daemon.json and
# network namespace; never the shared test engine) whose default runtime is kata.
# Arguments go to the runner (tests/conformance): -runtime runc, -shard 1/2, -run REGEXP.
# The instance stays up for the next run; `KATA_TEST_ENGINE_INSTANCE=conformance hack/engine.sh down`
# stops it.
set -euo pipefail
cd "$(dirname "$0")/.."

export KATA_TEST_ENGINE_INSTANCE=conformance
env_file=$(hack/engine.sh up)
# shellcheck disable=SC1090
. "$env_file"
exec go run ./tests/conformance "$@"
