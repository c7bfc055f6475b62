# The installer image: kata-deploy, the shim, the agent, kata-plugins and a guest kernel package,
# nothing else.
# Build it with `make image` (hack/image.sh builds the static binaries into the build context
# first: no base image is pulled). It installs onto the host whose root is mounted at /host:
#
#   docker run --rm --privileged --pid=host -v /:/host IMAGE install
#   docker run --rm --privileged --pid=host -v /:/host IMAGE uninstall
#   docker run --rm --privileged --pid=host -v /:/host IMAGE install --with-plugins   # hosts with systemd
#
# Another Docker socket than /var/run/docker.sock: -e DOCKER_HOST=unix:///path (the host's path).
FROM scratch
COPY . /usr/lib/kata-deploy/
# --host-root's default; PATH is searched inside the host root, for the host's own tools
# (dockerd --validate, QEMU, systemctl, apt-get).
ENV KATA_DEPLOY_HOST_ROOT=/host \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
ENTRYPOINT ["/usr/lib/kata-deploy/kata-deploy"]
CMD ["--help"]
