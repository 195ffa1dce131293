#!/usr/bin/env bash
# Build a small Debian image for `atex-provision podman --image` (and
# atex-orchestrate's podman specs): Debian's packages installed by
# mmdebstrap into a root filesystem, imported into podman. It holds what
# atex needs on a machine: bash and python3 (the test runner), rsync, and
# openssh-server (`--ssh`) and systemd (`--systemd`); man-db, so that
# man pages installed there can be read (the install test reads ours).
#
# Usage: scripts/sut-image.sh [IMAGE]   (default localhost/sut; root, as
# podman runs here)
# Environment: SUITE (bookworm), MIRROR (default: this machine's apt
# sources), PACKAGES (more packages, comma-separated).
set -euo pipefail

image=${1:-localhost/sut}
suite=${SUITE:-bookworm}
packages=python3,rsync,openssh-server,systemd-sysv,procps,iproute2,man-db${PACKAGES:+,$PACKAGES}

log() { echo "sut-image: $*" >&2; }

if ! command -v podman >/dev/null 2>&1; then
    log "error: podman is not installed (make deps installs it)"
    exit 1
fi
if ! command -v mmdebstrap >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        log "apt-get install mmdebstrap"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap </dev/null
    else
        log "error: mmdebstrap is not installed (apt-get install mmdebstrap)"
        exit 1
    fi
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/atex-sut-image.XXXXXX")
trap 'rm -rf "$work"' EXIT
log "mmdebstrap $suite with $packages"
# The rootfs as a tarball on stdout; apt's caches and lists left out.
mmdebstrap --variant=minbase --include="$packages" \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    "$suite" "$work/rootfs.tar" ${MIRROR:+"$MIRROR"}
log "podman import $image"
podman import --change 'CMD ["/bin/bash"]' "$work/rootfs.tar" "$image" >/dev/null
podman image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' "$image" >&2
log "done: atex-provision podman --image $image"
