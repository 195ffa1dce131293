#!/usr/bin/env bash
# Build (once) a small Debian guest for virtual machines: Debian's packages
# installed by mmdebstrap (minbase, a kernel, systemd, sshd, python3,
# ifupdown with DHCP on eth0, udev, rsync), root's authorized key from a
# key pair made for it, then an ext4 raw disk of the tree (mkfs.ext4 -d)
# and the kernel and initrd beside it for a direct kernel boot
# (`root=/dev/vda rw console=ttyS0 net.ifnames=0`). About 2.5 minutes.
#
# The result is cached outside the source tree, in $ATEX_VM_CACHE (default
# ${XDG_CACHE_HOME:-~/.cache}/atex/vm-image), and made again only when
# missing (or with --force). The last line on stdout is the options that
# boot it: --image DISK --kernel VMLINUZ --initrd INITRD --user root
# -i KEY (no spaces inside a value, so `$(make -s vm-image | tail -1)`
# splits into them).
#
# Usage: scripts/vm-image.sh [--force]   (root; mmdebstrap is installed
# with apt-get when missing)
# Environment: SUITE (bookworm), MIRROR (default: this machine's apt
# sources), DISK_SIZE (2G), ATEX_VM_CACHE.
set -euo pipefail

cache=${ATEX_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/atex/vm-image}
suite=${SUITE:-bookworm}
size=${DISK_SIZE:-2G}
packages=linux-image-amd64,systemd-sysv,openssh-server,python3,ifupdown,isc-dhcp-client,udev,rsync

log() { echo "vm-image: $*" >&2; }

force=false
for arg in "$@"; do
    case "$arg" in
    --force) force=true ;;
    -h | --help) sed -n '2,24p' "$0"; exit 0 ;;
    *) log "error: unknown argument '$arg'"; exit 2 ;;
    esac
done

options() {
    echo "--image $cache/disk.raw --kernel $cache/vmlinuz --initrd $cache/initrd.img --user root -i $cache/id_ed25519"
}

if ! $force && [ -s "$cache/disk.raw" ] && [ -s "$cache/vmlinuz" ] && [ -s "$cache/initrd.img" ] \
    && [ -s "$cache/id_ed25519" ]; then
    log "cached in $cache (--force to build it again)"
    options
    exit 0
fi
for tool in mmdebstrap mkfs.ext4 ssh-keygen; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        if [ "$tool" = mmdebstrap ] && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
            log "apt-get install mmdebstrap"
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap </dev/null
        else
            log "error: $tool is not installed"
            exit 1
        fi
    fi
done

mkdir -p "$cache"
work=$(mktemp -d "$cache/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
ssh-keygen -q -t ed25519 -N '' -C atex-vm -f "$work/id_ed25519"
log "mmdebstrap $suite with $packages"
mmdebstrap --variant=minbase --include="$packages" \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --customize-hook='mkdir -p -m 700 "$1/root/.ssh"' \
    --customize-hook="upload $work/id_ed25519.pub /root/.ssh/authorized_keys" \
    --customize-hook='chmod 600 "$1/root/.ssh/authorized_keys"' \
    --customize-hook='printf "auto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet dhcp\n" > "$1/etc/network/interfaces"' \
    --customize-hook='echo atex-vm > "$1/etc/hostname"' \
    --customize-hook='printf "/dev/vda / ext4 defaults 0 1\n" > "$1/etc/fstab"' \
    "$suite" "$work/root" ${MIRROR:+"$MIRROR"}
cp "$(ls "$work"/root/boot/vmlinuz-* | tail -n1)" "$work/vmlinuz"
cp "$(ls "$work"/root/boot/initrd.img-* | tail -n1)" "$work/initrd.img"
log "mkfs.ext4 -d ($size)"
mkfs.ext4 -q -F -L atex-root -d "$work/root" "$work/disk.raw" "$size"
chmod 644 "$work/vmlinuz" "$work/initrd.img"
for f in disk.raw vmlinuz initrd.img id_ed25519 id_ed25519.pub; do
    mv -f "$work/$f" "$cache/$f"
done
log "done: $cache"
options
