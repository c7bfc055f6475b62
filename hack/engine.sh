#!/usr/bin/env bash
# The test engine: a real containerd + dockerd built from the Go module proxy, isolated from any
# system Docker (own sockets, data-root, exec-root, pidfiles, daemon.json), used by CI, the e2e
# tests, the benchmarks and `make demo`.
#
#   hack/engine.sh up      install packages, build (cached), start, import busybox:latest, write the env file
#   hack/engine.sh down    stop what `up` started (state and images are kept for the next `up`)
#   hack/engine.sh purge   down, then remove the engine's state (images, containers)
#   hack/engine.sh env     print the env file's path (source it: . "$(hack/engine.sh env)")
#   hack/engine.sh build   only install packages and build the binaries
#   hack/engine.sh restart dockerd|containerd
#                          stop one daemon (TERM, then KILL after 30 s) and start it again with the
#                          same configuration (the fault runs of bench/soak)
#
# Overridable: KATA_ENGINE_CACHE (binaries, default /var/cache/kata-deploy/engine),
#              KATA_ENGINE_STATE (state, default /var/lib/kata-deploy-test-engine),
#              KATA_ENGINE_RUN (sockets and pidfiles, default /run/kata-deploy-test-engine).
#
# KATA_TEST_ENGINE_INSTANCE=NAME (lower-case letters, digits, dashes) runs a second, dedicated
# engine beside the shared one: state in /var/lib/kata-deploy-test-engine-NAME, sockets and
# pidfiles in /run/kata-deploy-test-engine-NAME, its own daemon.json and env file, and containerd
# and dockerd inside a network namespace of their own (ip netns kata-deploy-NAME), so its docker0,
# iptables rules and published ports are private. Suites that delete what they did not create
# (moby's integration tests, `make conformance`) use one; the default instance is unchanged.
# Such an instance is made for those suites: its dockerd also accepts API versions down to 1.24
# (DOCKER_MIN_API_VERSION; moby's tests play old clients), its busybox:latest has the users and
# groups of Docker Hub's busybox (daemon, staff, ...), and iputils-ping is installed (a test
# pings a container from the host).
set -euo pipefail

# Pinned versions: Docker Engine 29 with containerd 2.4 and runc 1.5.
MOBY_VERSION=v2.0.0-beta.24
# The Docker Engine release that module version is (releases/versions.yaml in the module); stamped
# into dockerd so `docker version` and `kata-deploy check` see a real version, not "library-import".
DOCKER_ENGINE_VERSION=29.8.1
CONTAINERD_VERSION=v2.4.2
RUNC_VERSION=v1.5.3
DOCKER_CLI_VERSION=v29.8.0+incompatible

# Every tool the tests run (testreq.Command names the package when one is missing): the engine's
# and QEMU's, plus gcc (guestimage's ELF tests), git (the upgrade test builds an old installer),
# cpio, xz-utils, lz4, bzip2 (initrd and kernel payload tests), busybox-static (rootfs), procps
# (pgrep), apt (the tests apt-get download the guest kernel), rpm (the package tests list the .rpm
# with rpm -qlp).
APT_PACKAGES=(qemu-system-x86 qemu-utils iptables libseccomp-dev busybox-static e2fsprogs xfsprogs kmod cpio
	pkg-config iproute2 procps xz-utils lz4 bzip2 gcc git apt rpm)

INSTANCE=${KATA_TEST_ENGINE_INSTANCE:-}
SUFFIX=
NETNS=
# NS_EXEC prefixes the daemons' command lines: empty for the default instance, nsenter into the
# instance's network namespace otherwise (the mount namespace stays the host's, as for the default).
NS_EXEC=()
DOCKERD_ENV=()
if [ -n "$INSTANCE" ]; then
	if ! [[ $INSTANCE =~ ^[a-z0-9][a-z0-9-]{0,19}$ ]]; then
		printf 'engine: error: KATA_TEST_ENGINE_INSTANCE=%q: want 1-20 lower-case letters, digits or dashes\n' "$INSTANCE" >&2
		exit 2
	fi
	SUFFIX=-$INSTANCE
	NETNS=kata-deploy-$INSTANCE
	NS_EXEC=(nsenter "--net=/run/netns/$NETNS" --)
	DOCKERD_ENV=(env DOCKER_MIN_API_VERSION=1.24)
	APT_PACKAGES+=(iputils-ping)
fi
CACHE=${KATA_ENGINE_CACHE:-/var/cache/kata-deploy/engine}
STATE=${KATA_ENGINE_STATE:-/var/lib/kata-deploy-test-engine$SUFFIX}
RUN=${KATA_ENGINE_RUN:-/run/kata-deploy-test-engine$SUFFIX}
BIN=$CACHE/docker-$DOCKER_ENGINE_VERSION-moby-$MOBY_VERSION-containerd-$CONTAINERD_VERSION-runc-$RUNC_VERSION/bin
ENV_FILE=$STATE/env
DAEMON_JSON=$STATE/daemon.json
DOCKER_SOCK=$RUN/docker.sock
CONTAINERD_SOCK=$RUN/containerd.sock
DOCKERD_PID=$RUN/dockerd.pid
CONTAINERD_PID=$RUN/containerd.pid

log() { printf 'engine: %s\n' "$*" >&2; }
die() {
	printf 'engine: error: %s\n' "$*" >&2
	exit 1
}

install_packages() {
	local missing=()
	for p in "${APT_PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	log "installing Debian packages: ${missing[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# build installs the pinned engine into $BIN; a second call finds the binaries and returns at once.
build() {
	install_packages
	local want=(dockerd docker-proxy containerd containerd-shim-runc-v2 runc)
	local have=1
	for b in "${want[@]}"; do [ -x "$BIN/$b" ] || have=0; done
	if [ $have = 1 ]; then return 0; fi
	log "building the engine into $BIN (about 5 minutes on 2 cores; cached afterwards)"
	mkdir -p "$BIN"
	local tmp
	tmp=$(mktemp -d)
	# A throwaway module directory keeps the build out of the project's go.mod.
	(
		cd "$tmp"
		export GOBIN=$BIN GOFLAGS=-mod=mod
		go install -ldflags "-X github.com/moby/moby/v2/dockerversion.Version=$DOCKER_ENGINE_VERSION -X github.com/moby/moby/v2/dockerversion.GitCommit=moby-$MOBY_VERSION" \
			"github.com/moby/moby/v2/cmd/dockerd@$MOBY_VERSION"
		go install "github.com/moby/moby/v2/cmd/docker-proxy@$MOBY_VERSION"
		go install "github.com/containerd/containerd/v2/cmd/containerd@$CONTAINERD_VERSION" \
			"github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION"
		go install -tags seccomp "github.com/opencontainers/runc@$RUNC_VERSION"
	) || {
		rm -rf "$tmp"
		die "building the engine failed (see above); is the Go module proxy reachable?"
	}
	rm -rf "$tmp"
	if ! command -v docker >/dev/null 2>&1; then
		log "no docker CLI on this machine: building github.com/docker/cli $DOCKER_CLI_VERSION"
		(cd "$(mktemp -d)" && GOBIN=$BIN go install "github.com/docker/cli/cmd/docker@$DOCKER_CLI_VERSION") ||
			die "no docker CLI and building one failed; install Debian's docker.io or docker-ce-cli"
	fi
}

# close_inherited_fds closes every descriptor above stderr in the calling (sub)shell: the daemons
# outlive whoever started them and must not keep that caller's files open (a `flock LOCK make ...`
# would otherwise leave LOCK held by dockerd until it stops).
close_inherited_fds() {
	local fd
	for fd in /proc/$BASHPID/fd/*; do
		fd=${fd##*/}
		[ "$fd" -gt 2 ] 2>/dev/null && eval "exec $fd>&-"
	done
	return 0
}

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
	local secs=$1 what=$2
	shift 2
	for _ in $(seq $((secs * 10))); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	die "$what did not come up within ${secs}s; see $STATE/*.log"
}

start_containerd() {
	pid_alive "$CONTAINERD_PID" && return 0
	mkdir -p "$STATE/containerd" "$RUN/containerd"
	# Only what Docker needs: the CRI plugin and friends are disabled so startup is quick and quiet.
	cat >"$STATE/containerd.toml" <<EOF
version = 3
root = "$STATE/containerd"
state = "$RUN/containerd"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime", "io.containerd.podsandbox.controller.v1.podsandbox"]
[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$CONTAINERD_SOCK.ttrpc"
[debug]
  address = "$RUN/containerd-debug.sock"
EOF
	log "starting containerd ($CONTAINERD_SOCK)"
	(
		close_inherited_fds
		PATH=$BIN:$PATH exec "${NS_EXEC[@]}" setsid "$BIN/containerd" --config "$STATE/containerd.toml"
	) >>"$STATE/containerd.log" 2>&1 </dev/null &
	echo $! >"$CONTAINERD_PID"
	wait_for 30 containerd test -S "$CONTAINERD_SOCK"
}

start_dockerd() {
	pid_alive "$DOCKERD_PID" && return 0
	mkdir -p "$STATE/docker" "$RUN/exec"
	[ -f "$DAEMON_JSON" ] || echo '{}' >"$DAEMON_JSON"
	log "starting dockerd ($DOCKER_SOCK)"
	(
		close_inherited_fds
		PATH=$BIN:$PATH exec "${DOCKERD_ENV[@]}" "${NS_EXEC[@]}" setsid "$BIN/dockerd" \
			--host "unix://$DOCKER_SOCK" \
			--containerd "$CONTAINERD_SOCK" \
			--data-root "$STATE/docker" \
			--exec-root "$RUN/exec" \
			--pidfile "$DOCKERD_PID" \
			--config-file "$DAEMON_JSON"
	) >>"$STATE/dockerd.log" 2>&1 </dev/null &
	wait_for 60 dockerd docker -H "unix://$DOCKER_SOCK" version
}

# import_busybox builds busybox:latest from Debian's busybox-static with every applet linked
# (there is no registry to pull from), plus the passwd/group files that `--user` needs.
import_busybox() {
	docker -H "unix://$DOCKER_SOCK" image inspect busybox:latest >/dev/null 2>&1 && return 0
	log "importing busybox:latest from Debian's busybox-static"
	local root
	root=$(mktemp -d)
	mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,root,home,var,proc,sys,dev}
	chmod 1777 "$root/tmp"
	cp /bin/busybox "$root/bin/busybox"
	local applet
	for applet in $(/bin/busybox --list-full); do
		[ "$applet" = bin/busybox ] && continue
		ln -sf /bin/busybox "$root/$applet"
	done
	printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
	printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
	if [ -n "$INSTANCE" ]; then
		# Docker Hub's busybox users and groups, which moby's tests name (--user daemon, --group-add staff).
		printf '%s\n' daemon:x:1:1:daemon:/usr/sbin:/bin/false bin:x:2:2:bin:/bin:/bin/false \
			sys:x:3:3:sys:/dev:/bin/false sync:x:4:100:sync:/bin:/bin/sync mail:x:8:8:mail:/var/spool/mail:/bin/false \
			www-data:x:33:33:www-data:/var/www:/bin/false operator:x:37:37:Operator:/var:/bin/false >>"$root/etc/passwd"
		printf '%s\n' daemon:x:1: bin:x:2: sys:x:3: adm:x:4: tty:x:5: disk:x:6: lp:x:7: mail:x:8: kmem:x:9: \
			wheel:x:10:root cdrom:x:11: dialout:x:18: floppy:x:19: video:x:28: audio:x:29: tape:x:32: \
			www-data:x:33: operator:x:37: utmp:x:43: users:x:100: staff:x:50: >>"$root/etc/group"
	fi
	tar -C "$root" -c . | docker -H "unix://$DOCKER_SOCK" import --change 'CMD ["sh"]' - busybox:latest >/dev/null
	rm -rf "$root"
}

write_env() {
	cat >"$ENV_FILE" <<EOF
# Written by hack/engine.sh up: source this file to talk to the test engine.
export DOCKER_HOST=unix://$DOCKER_SOCK
export KATA_TEST_ENGINE=1
export KATA_TEST_DAEMON_JSON=$DAEMON_JSON
export KATA_TEST_DOCKERD_PIDFILE=$DOCKERD_PID
export KATA_TEST_CONTAINERD_ADDRESS=$CONTAINERD_SOCK
export KATA_TEST_ENGINE_BIN=$BIN
export KATA_TEST_ENGINE_LOGS=$STATE
EOF
	if [ -n "$INSTANCE" ]; then
		cat >>"$ENV_FILE" <<EOF
export KATA_TEST_ENGINE_INSTANCE=$INSTANCE
export KATA_TEST_ENGINE_NETNS=/run/netns/$NETNS
EOF
	fi
}

# netns_up creates the instance's network namespace: loopback, and an "eth0" (one end of a veth
# pair inside it, with a documentation address, TEST-NET-1) standing for the host's external
# address (moby's NAT tests dial published ports on eth0's address). No route out: its containers
# reach each other and the instance's published ports, not the outside.
netns_up() {
	[ -n "$NETNS" ] || return 0
	if [ ! -e "/run/netns/$NETNS" ]; then
		log "creating network namespace $NETNS"
		ip netns add "$NETNS"
	fi
	ip -n "$NETNS" link set lo up
	if ! ip -n "$NETNS" link show eth0 >/dev/null 2>&1; then
		ip -n "$NETNS" link add eth0 type veth peer name eth0-peer
		ip -n "$NETNS" link set eth0-peer up
		ip -n "$NETNS" addr add 192.0.2.1/24 dev eth0
	fi
	ip -n "$NETNS" link set eth0 up
}

netns_down() {
	[ -n "$NETNS" ] || return 0
	[ -e "/run/netns/$NETNS" ] || return 0
	ip netns delete "$NETNS" 2>/dev/null || true
}

up() {
	[ "$(id -u)" = 0 ] || die "the test engine needs root (it runs dockerd and containerd)"
	build
	mkdir -p "$STATE" "$RUN"
	netns_up
	start_containerd
	start_dockerd
	import_busybox
	write_env
	log "up: $(docker -H "unix://$DOCKER_SOCK" version --format 'Docker {{.Server.Version}}, API {{.Server.APIVersion}}')"
	echo "$ENV_FILE"
}

stop_pidfile() { # stop_pidfile PIDFILE NAME
	local pidfile=$1 name=$2 pid
	pid_alive "$pidfile" || {
		rm -f "$pidfile"
		return 0
	}
	pid=$(cat "$pidfile")
	log "stopping $name (pid $pid)"
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 300); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
	rm -f "$pidfile"
}

down() {
	stop_pidfile "$DOCKERD_PID" dockerd
	stop_pidfile "$CONTAINERD_PID" containerd
	# Shims outlive containerd by design; ours are the ones whose socket lives under our state dir.
	pkill -f "containerd-shim-runc-v2 .*-address $CONTAINERD_SOCK" 2>/dev/null || true
	if [ -n "$INSTANCE" ]; then
		# A dedicated instance runs VM containers too; their shims end with it.
		pkill -f "containerd-shim-kata-v2 .*-address $CONTAINERD_SOCK" 2>/dev/null || true
	fi
	unmount_under "$RUN"
	unmount_under "$STATE"
	rm -f "$ENV_FILE"
	netns_down
}

# unmount_under detaches what the stopped daemons left mounted below a directory of ours
# (dockerd's data-root bind mount, its default netns file, overlay mounts).
unmount_under() {
	{ grep -o " $1/[^ ]*" /proc/mounts || true; } | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
}

purge() {
	down
	rm -rf "$STATE" "$RUN"
}

case "${1:-}" in
up) up ;;
down) down ;;
purge) purge ;;
build) build ;;
restart)
	[ -f "$ENV_FILE" ] || die "the engine is not up: run hack/engine.sh up"
	case "${2:-}" in
	dockerd)
		stop_pidfile "$DOCKERD_PID" dockerd
		start_dockerd
		;;
	containerd)
		stop_pidfile "$CONTAINERD_PID" containerd
		start_containerd
		;;
	*) die "restart what? hack/engine.sh restart dockerd|containerd" ;;
	esac
	;;
env)
	[ -f "$ENV_FILE" ] || die "the engine is not up: run hack/engine.sh up"
	echo "$ENV_FILE"
	;;
*)
	sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
	exit 2
	;;
esac
