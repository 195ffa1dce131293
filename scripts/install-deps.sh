#!/usr/bin/env bash
# Install what atex's tests need, only where it is missing (idempotent,
# non-interactive: works with CI=true and no stdin).
#
#   scripts/install-deps.sh              test tools: cargo-nextest, python3, GNU time,
#                                        openssh-server/-client, rsync, podman, runc, catatonit,
#                                        chromium, chromium-driver, man-db, tmux, libvirt,
#                                        qemu, mmdebstrap; podman's
#                                        /etc/containers/containers.conf, a running
#                                        libvirtd, the VM image and the localhost/sut
#                                        image when missing
#   scripts/install-deps.sh --fmf-venv   also python fmf 1.7.0 in .venv-fmf and
#                                        Python ATEX 1.2 in .venv-atex (only the
#                                        benchmark comparisons use them)
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
want_venv=false
for arg in "$@"; do
    case "$arg" in
        --fmf-venv) want_venv=true ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "install-deps: error: unknown argument '$arg'" >&2; exit 2 ;;
    esac
done

log() { echo "install-deps: $*" >&2; }

apt_updated=false
# apt_install PACKAGE...: install Debian packages, running `apt-get update`
# at most once per invocation.
apt_install() {
    if ! command -v apt-get >/dev/null 2>&1; then
        log "error: need $* but apt-get is not available; install them by hand"
        exit 1
    fi
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then sudo=(sudo -n); fi
    if ! $apt_updated; then
        log "apt-get update"
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq </dev/null
        apt_updated=true
    fi
    log "apt-get install $*"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "$@" </dev/null
}

if ! command -v cargo >/dev/null 2>&1; then
    log "error: cargo is not installed (install a Rust toolchain with rustup first)"
    exit 1
fi

if ! cargo nextest --version >/dev/null 2>&1; then
    log "cargo install --locked cargo-nextest"
    cargo install --locked cargo-nextest </dev/null
fi

# The conformance runner (../shared/conformance/fmf/check.sh) is python3.
if ! command -v python3 >/dev/null 2>&1; then
    apt_install python3
fi

# The benchmark measures peak RSS with GNU time when it is there.
if [ ! -x /usr/bin/time ]; then
    apt_install time
fi

# The connection tests run real sshd machines on 127.0.0.1 and upload
# with rsync (tests/src/sshd.rs).
conn_pkgs=()
if [ ! -x /usr/sbin/sshd ]; then conn_pkgs+=(openssh-server); fi
if ! command -v ssh >/dev/null 2>&1 || ! command -v ssh-keygen >/dev/null 2>&1; then
    conn_pkgs+=(openssh-client)
fi
if ! command -v rsync >/dev/null 2>&1; then conn_pkgs+=(rsync); fi
# The podman connection test runs a container (ENVIRONMENT.md: rootful,
# with runc).
if ! command -v podman >/dev/null 2>&1; then conn_pkgs+=(podman); fi
if ! command -v runc >/dev/null 2>&1; then conn_pkgs+=(runc); fi
# `podman run --init` (atex-provision's containers reap orphaned test
# processes) needs catatonit, which podman only recommends.
if [ ! -x /usr/libexec/podman/catatonit ] && ! command -v catatonit >/dev/null 2>&1; then
    conn_pkgs+=(catatonit)
fi
# The HTML report test drives Debian's headless Chromium through
# ChromeDriver (tests/src/webdriver.rs).
if [ ! -x /usr/bin/chromium ]; then conn_pkgs+=(chromium); fi
if [ ! -x /usr/bin/chromedriver ]; then conn_pkgs+=(chromium-driver); fi
# The live view test (tests/tests/live_view.rs) reads a tmux pane.
if ! command -v tmux >/dev/null 2>&1; then conn_pkgs+=(tmux); fi
# The install test (tests/tests/install.rs) renders the man pages.
if ! command -v man >/dev/null 2>&1; then conn_pkgs+=(man-db); fi
if [ ${#conn_pkgs[@]} -gt 0 ]; then
    apt_install "${conn_pkgs[@]}"
fi

# Rootful podman here works only with runc and explicit ulimits
# (ENVIRONMENT.md). The tests pass their own CONTAINERS_CONF; this makes
# `atex-provision podman` work on such a machine without one. An existing
# containers.conf is left alone.
if command -v podman >/dev/null 2>&1 && [ ! -e /etc/containers/containers.conf ] \
    && [ "$(id -u)" -eq 0 ]; then
    log "writing /etc/containers/containers.conf (runc, explicit ulimits)"
    mkdir -p /etc/containers
    cat >/etc/containers/containers.conf <<'CONF'
# Written by atex's scripts/install-deps.sh: crun fails on this kernel's
# cgroup setup and root cannot raise RLIMIT_NOFILE here.
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]
[engine]
runtime = "runc"
CONF
fi

# The libvirt provisioner's tests (tests/tests/libvirt.rs) boot virtual
# machines: libvirt (virsh, libvirtd with its qemu driver), qemu, and
# mmdebstrap for the guest image (`make vm-image`). Debian's
# qemu-system-x86 wants the qemu-utils of its own build (the security
# archive's may be older): both are pinned to qemu-system-x86's candidate.
# The machine may already carry a newer qemu-utils (these images ship
# bookworm-backports' 10.0, which Debian 12's qemu-system-x86 does not
# accept): it is then replaced by the matching build (--allow-downgrades).
vm_pkgs=()
vm_opts=()
if ! command -v virsh >/dev/null 2>&1; then vm_pkgs+=(libvirt-clients); fi
if [ ! -x /usr/sbin/libvirtd ]; then
    vm_pkgs+=(libvirt-daemon-system libvirt-daemon-driver-qemu)
fi
if ! command -v mmdebstrap >/dev/null 2>&1; then vm_pkgs+=(mmdebstrap); fi
if ! command -v qemu-system-x86_64 >/dev/null 2>&1 || ! command -v qemu-img >/dev/null 2>&1; then
    # The candidate is known once the package lists are fresh.
    apt_install --dry-run qemu-system-x86 >/dev/null
    qemu_version=$(apt-cache policy qemu-system-x86 | awk '/Candidate:/ { print $2 }')
    if [ -n "$qemu_version" ] && [ "$qemu_version" != "(none)" ]; then
        vm_pkgs+=("qemu-system-x86=$qemu_version" "qemu-utils=$qemu_version")
        vm_opts+=(--allow-downgrades)
    else
        vm_pkgs+=(qemu-system-x86 qemu-utils)
    fi
fi
if [ ${#vm_pkgs[@]} -gt 0 ]; then
    apt_install "${vm_opts[@]}" "${vm_pkgs[@]}"
fi
# libvirtd and virtlogd: started by systemd where it runs, else here (a
# container without systemd), each only when not answering already.
if [ "$(id -u)" -eq 0 ] && command -v virsh >/dev/null 2>&1 \
    && ! virsh -c qemu:///system version >/dev/null 2>&1; then
    if [ -d /run/systemd/system ]; then
        log "starting libvirtd (systemctl)"
        systemctl start virtlogd libvirtd
    else
        log "starting virtlogd and libvirtd (no systemd here)"
        pgrep -x virtlogd >/dev/null || virtlogd -d
        libvirtd -d
        for _ in $(seq 50); do
            virsh -c qemu:///system version >/dev/null 2>&1 && break
            sleep 0.1
        done
    fi
fi
# The guest image, cached outside the tree (~/.cache/atex/vm-image).
if [ "$(id -u)" -eq 0 ] && command -v mmdebstrap >/dev/null 2>&1; then
    bash "$here/scripts/vm-image.sh" >/dev/null
fi

# The image tests (tests/tests/sut_image.rs) run localhost/sut, the image
# `make sut-image` builds from Debian's packages.
if command -v podman >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ] \
    && ! podman image exists localhost/sut 2>/dev/null; then
    log "building localhost/sut (scripts/sut-image.sh)"
    bash "$here/scripts/sut-image.sh" localhost/sut
fi

if $want_venv; then
    venv="$here/.venv-fmf"
    if "$venv/bin/python" -c 'import fmf, importlib.metadata as m; assert m.version("fmf") == "1.7.0"' \
        >/dev/null 2>&1; then
        :
    else
        if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
            apt_install python3-venv
        fi
        log "creating $venv with fmf==1.7.0"
        rm -rf "$venv"
        python3 -m venv "$venv"
        # Keep the venv out of git without touching the project's .gitignore.
        echo '*' >"$venv/.gitignore"
        "$venv/bin/pip" install --quiet --disable-pip-version-check fmf==1.7.0 </dev/null
    fi
    # Python ATEX 1.2 (bench/exec.sh, bench/orchestrate.sh) needs python
    # 3.12 or newer, which Debian 12's python3 is not: a pyenv version or
    # a python3.12/3.13 on PATH.
    venv="$here/.venv-atex"
    if "$venv/bin/python" -c 'import atex, importlib.metadata as m; assert m.version("atex") == "1.2"' \
        >/dev/null 2>&1; then
        :
    else
        new_enough() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; }
        python=
        for candidate in "$(pyenv root 2>/dev/null)"/versions/3.1[2-9]*/bin/python3 \
            python3.13 python3.12 python3; do
            if new_enough "$candidate"; then python=$candidate; break; fi
        done
        if [ -z "$python" ]; then
            log "error: Python ATEX 1.2 needs python 3.12 or newer; install one (e.g. pyenv install 3.13)"
            exit 1
        fi
        log "creating $venv with atex==1.2 fmf==1.7.0 ($python)"
        rm -rf "$venv"
        "$python" -m venv "$venv"
        echo '*' >"$venv/.gitignore"
        "$venv/bin/pip" install --quiet --disable-pip-version-check atex==1.2 fmf==1.7.0 </dev/null
    fi
fi

log "ok"
