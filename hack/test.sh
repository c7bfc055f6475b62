#!/usr/bin/env bash
# Runs every test: static checks, unit tests, then end-to-end tests against the test engine
# (hack/engine.sh up is idempotent and takes seconds once the engine is built).
# KATA_E2E_REQUIRED=1 turns "skip: no engine / no QEMU / not root" into failures, so a CI run
# cannot pass by skipping.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== static checks"
make lint

echo "== test engine"
env_file=$(hack/engine.sh up)
# shellcheck disable=SC1090
. "$env_file"
export KATA_E2E_REQUIRED=1

echo "== tests"
go test -count=1 -timeout 60m ./... 2>&1 | tee /tmp/kata-deploy-test.log

# The VM runtime's end-to-end tests again, each container a clone of a VM template
# ([factory] template = true), most of them one that waited in a pool of one ([factory] pool = 1):
# templating and the pool must not change what a container sees (~5 min).
echo "== end-to-end tests in clones of a VM template, from a pool"
KATA_E2E_TEMPLATE=1 KATA_E2E_POOL=1 go test -count=1 -timeout 30m -run '^TestKata' ./tests/e2e/ 2>&1 | tee -a /tmp/kata-deploy-test.log
