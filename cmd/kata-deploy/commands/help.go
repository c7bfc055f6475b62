package commands

// The long help of the commands that manage an install, in one place so that they are read,
// and kept true, together. Flag help lives with the flag binders (flags.go).

const installLong = `install puts the VM runtime on this host and registers it with the running Docker daemon:

  1. preflight: the checks of "kata-deploy check"; a failing one stops here, with its remedy
  2. the guest image (an uncompressed vmlinux and an initrd whose /init is the agent), built from
     the distribution's own kernel package (fetched with apt-get download) or --kernel
  3. the shim and configuration-qemu.toml (QEMU, accelerator, firmware detected here) under --prefix
  4. the runtime entry in the daemon.json the running dockerd reads, validated with
     dockerd --validate, Docker reloaded (SIGHUP) and checked; any failure restores daemon.json
  5. a smoke container (docker run --rm --runtime=NAME busybox uname -r) that must print the
     guest kernel

The artifacts go into <prefix>/versions/<id>/ and <prefix>/current points at them; the runtime
is registered through current, so "kata-deploy upgrade" and "kata-deploy rollback" switch
versions with one atomic rename, without touching daemon.json.

With --from kata-static-<version>-<arch>.tar.xz (or .tar.zst; kata-go-static-… from 4.1), the
upstream Kata Containers release replaces steps 2 and 3: it is extracted to /opt/kata, where its
configuration expects it, every entry checked first (relative paths under opt/kata/ only, no
"..", only files, directories and symlinks, no symlink leading out, bounded sizes), through a
staging directory renamed into place; an /opt/kata kata-deploy did not install is refused, or
moved aside with --replace-foreign (or --force) and put back by uninstall. The runtime is
registered with the release's bin/containerd-shim-kata-v2 and options.ConfigPath
/opt/kata/share/defaults/kata-containers/configuration-qemu.toml. A refused tarball leaves nothing.

A file under --prefix kata-deploy did not install is refused unless --replace-foreign; one of its
own changed since install is left as is, with a warning, unless --replace-modified; another
daemon.json entry of the same runtime name is refused unless --replace-runtime-entry. Replaced
files are kept aside and put back by uninstall. --force means all three.

With --engine containerd (a Kubernetes node without Docker), step 4 is a drop-in
<config dir>/conf.d/kata-deploy-NAME.toml registering the runtime with containerd's CRI (type
io.containerd.kata.v2, runtime_path and options.ConfigPath, in the main configuration's version
2, 3 or 4), added to the main configuration's imports unless an entry already covers it, checked
with "containerd config dump"; containerd is restarted (systemctl restart when systemd runs it,
otherwise you are told to) and there is no smoke container. Use NAME as a RuntimeClass handler.

Everything is recorded in <prefix>/manifest.json, step by step, so "kata-deploy uninstall" puts
the host back exactly as it was, and an interrupted install is finished by running it again.
A second install with the same inputs changes nothing. --dry-run prints the plan and the
daemon.json diff without changing anything.

The shim (containerd-shim-kata-v2) and the agent (kata-agent, static) are taken from the
directory of this kata-deploy executable ("make build" puts all three in bin/) or --artifacts-dir.

--with-plugins also installs kata-deploy's Docker plugins (kata-plugins, from the same directory)
as <prefix>/plugins/kata-plugins and starts them, serving the kata-block volume driver
("docker volume create -d kata-block -o size=10G NAME": block devices a VM mounts directly) on
/run/docker/plugins/kata-block.sock (mode 0660), volumes in /var/lib/kata-deploy/plugins/block,
and the kata-net network driver ("docker network create -d kata-net NAME": a bridge per network,
where a VM's tap is a port of the bridge) on /run/docker/plugins/kata-net.sock, state in
/var/lib/kata-deploy/plugins/net.
Where systemd runs, as the unit /etc/systemd/system/kata-plugins.service, ordered before
docker.service and restarted on failure; otherwise as a process of its own session (pid and start
time recorded; its output in <prefix>/plugins/kata-block.log): nothing restarts it then, and
running "install --with-plugins" again starts it if it stopped. From the installer image
(--host-root) only the unit can serve them: without systemd on the host it is refused (a process
would end with the image's container). The plugin is not versioned:
upgrade and rollback leave it as it is; uninstall removes it, and refuses while Docker has
volumes or networks of its drivers (--force removes it anyway). The alternative without install: a managed plugin ("make plugin-bundle",
then "docker plugin create"; README).

--template turns VM templating on in the configuration ([factory] template = true): the first
container boots a template VM and saves it under <state_dir>.cache/template; every later one
starts as a clone of it (faster, and the memory of the guest kernel and agent is shared
read-only between containers, which is the trade-off: see docs/security.md, "VM templating").
The version gets a new configuration, as with new artifacts (the one before stays for rollback);
upgrades keep the setting; --template=false turns it off; without the flag the version in use
keeps its own.

--pool N (with templating) keeps N clones of the template restored and waiting ([factory] pool =
N, 0 to 16): a container takes one instead of restoring a clone, which halves its start under
emulation, and a background process of the shim refills the pool. Each waiting clone costs about
40 MiB of host memory under TCG and a little CPU. Kept like --template; --pool 0 turns it off,
and so does --template=false.

Exit status: 0 installed (or nothing to do), 1 failed (the message says what was left and how to
finish), 2 usage error.`

const upgradeLong = `upgrade installs the shim, agent and guest kernel given (by default: the ones next to this
kata-deploy, and the kernel package the install used) as a new version in
<prefix>/versions/<id>/, beside the version in use, then switches the symlink <prefix>/current to
it with one atomic rename. The runtime is registered through current, so daemon.json does not
change and Docker is not reloaded; running containers keep the shim they started with.

The new version is smoke-tested (docker run --rm --runtime=NAME busybox uname -r); if it fails,
current is switched back and the command fails. Exactly one previous version is kept:
"kata-deploy rollback" switches back to it. Older versions are removed.

Artifacts identical to the version in use change nothing. An install made by an earlier
kata-deploy (bin/ and share/ directly under the prefix) is moved into versions: its daemon.json
entry is re-pointed through current and Docker reloaded, once. An interrupted upgrade is finished
by running it again (or undone by "kata-deploy uninstall").

Exit status: 0 upgraded (or nothing to do), 1 failed, 2 usage error.`

const rollbackLong = `rollback points <prefix>/current back at the previous version (the one the last upgrade
replaced), with one atomic rename. daemon.json does not change and Docker is not reloaded; running
containers keep the shim they started with, new ones start with the previous version. The
version rolled back from becomes the previous one, so a second rollback undoes the first.

The previous version must be complete and unchanged (its files are checked first). The version
rolled back to is smoke-tested unless --skip-smoke.

Exit status: 0 rolled back, 1 failed or nothing to roll back to, 2 usage error.`

const uninstallLong = `uninstall undoes "kata-deploy install" using its manifest (<prefix>/manifest.json):

  - daemon.json: only the changes install made are reverted (later edits of yours survive; an
    entry you changed is kept and reported), Docker is reloaded and checked
  - with containerd: the import install added to its main configuration is cut out (the file is
    byte for byte what it was), the drop-in removed, containerd restarted
  - files: only those install created and that are unchanged since; changed ones are kept and
    reported, and files install replaced (--replace-foreign, --replace-modified) are put back
  - directories install created, when empty
  - once no container of the runtime runs: the waiting clones of its pool (their QEMU stopped,
    their mounts undone), its VM templates and QEMU probes in <state_dir>.cache, and that
    directory and the state directory when install found them absent and they are empty
  - the plugin service of --with-plugins: stopped (systemctl disable --now, or SIGTERM to the
    recorded process), its unit, binary, log, socket and empty state removed. While Docker has
    volumes of its driver (docker volume ls --filter driver=kata-block) uninstall refuses, lists
    them and changes nothing: remove them (docker volume rm), or pass --force, which removes the
    plugin anyway and lists the volumes whose images it leaves in the state directory

After install and uninstall with nothing else changed, daemon.json is byte for byte what it was
and nothing is left under the prefix. While containers use the runtime, uninstall refuses and
lists them, unless --ignore-in-use (or --force). An interrupted uninstall is finished by running
it again.

Exit status: 0 uninstalled (or nothing was installed), 1 failed, 2 usage error.`

const statusLong = `status reports on the install under --prefix without changing anything: its version and
state, the current and previous versions (what rollback returns to), every installed file with its
recorded sha256 and whether it is still intact, whether daemon.json holds the entry install
wrote and whether Docker lists the runtime (with containerd: whether the drop-in is imported,
seen in containerd's configuration, and loaded by a restart), the containers running with it,
the accelerator (configured, and what works on this host now), and the plugin service of
--with-plugins (running, socket reachable, how many volumes Docker has of it; not serving is a
problem), and VM templating: on or off in the configuration in use, and each template the runtime
keeps (its key, the memory its RAM file takes on disk, its age, its last clone, why its last build
failed), and the pool of clones: its size, and per template how many clones wait, start or were
taken.

Exit status: 0 installed and healthy, 1 not installed or a problem (listed), 2 usage error.
The JSON output (--output json, schemaVersion 1) only ever gains fields.`
