#!/usr/bin/env bash
# A newcomer's first run on a machine without Docker: brings up the test engine, installs the VM
# runtime into it with kata-deploy, and runs one container in a VM next to one under runc.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "demo: run as root (sudo make demo): it starts dockerd and QEMU" >&2; exit 1; }

echo "== 1/4 the test engine (Docker Engine built from source, isolated from any system Docker)"
env_file=$(hack/engine.sh up)
# shellcheck disable=SC1090
. "$env_file"

echo "== 2/4 building kata-deploy, the shim and the guest agent"
make --no-print-directory build >/dev/null

echo "== 3/4 sudo kata-deploy install"
bin/kata-deploy install

echo "== 4/4 docker run --rm --runtime=kata busybox uname -r"
start=$(date +%s.%N)
guest=$(docker run --rm --runtime=kata busybox uname -r)
end=$(date +%s.%N)
runc_kernel=$(docker run --rm busybox uname -r)
printf '\n  host kernel (runc container): %s\n' "$runc_kernel"
printf '  guest kernel (kata container): %s   (%.1f s for the whole docker run)\n' "$guest" "$(awk -v a="$start" -v b="$end" 'BEGIN{print b-a}')"
accel=$(bin/kata-deploy check -o json | sed -n 's/^  "accelerator": "\(.*\)",/\1/p')
printf '  accelerator: %s\n\n' "$accel"
echo "Undo: bin/kata-deploy uninstall && hack/engine.sh down"
