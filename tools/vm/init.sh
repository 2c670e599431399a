#!/bin/busybox sh
# Stage 1 of the kernel-matrix guest: /init of the initramfs built by tools/vm/initramfs.py.
#
# Loads the few modules needed to reach the host (virtio-pci, 9p, overlay), mounts the
# host's root read-only over 9p (tag "hostroot") under a tmpfs-backed overlay, so the
# guest may write anywhere without touching the host, mounts the writable results share
# (tag "kmatrix") at /kmatrix, prepares /proc /sys /dev /tmp /run and the BPF-related
# filesystems (bpffs, tracefs, debugfs, securityfs, cgroup2), binds the kernel's modules
# to /lib/modules/$(uname -r), and switch_roots into the overlay, where stage2.sh (busybox
# sh as PID 1) runs the command the host wrote to /kmatrix/cmd.sh and powers off.
#
# Any failure here is an infrastructure error: it prints KMATRIX-STAGE1-FAILED and powers
# off, and the host runner reports the kernel as unbootable (after one retry).

/bin/busybox mkdir -p /proc /sys /dev /host /rw /newroot /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin

mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t proc proc /proc
mount -t sysfs sysfs /sys

fail() {
    echo "KMATRIX-STAGE1-FAILED: $*"
    [ -f /tmp/err ] && cat /tmp/err
    sync
    poweroff -f
    sleep 60
}

echo "kmatrix: stage1 on $(uname -r)"

REL=$(uname -r)
KDIR=
REPO=
CACHE=none
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        kmatrix.kdir=*) KDIR=${arg#kmatrix.kdir=} ;;
        kmatrix.repo=*) REPO=${arg#kmatrix.repo=} ;;
        kmatrix.cache=*) CACHE=${arg#kmatrix.cache=} ;;
    esac
done
[ -n "$KDIR" ] || fail "no kmatrix.kdir= on the kernel command line"

mkdir -p /tmp
for m in $(cat /modules.list); do
    insmod "/modules/$m" 2>/tmp/err || fail "insmod $m"
done

O9P=trans=virtio,version=9p2000.L,msize=512000
mount -t 9p -o "$O9P,ro,cache=$CACHE" hostroot /host 2>/tmp/err || fail "mount 9p hostroot"
mount -t tmpfs -o mode=0755 tmpfs /rw || fail "mount tmpfs /rw"
mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/host,upperdir=/rw/upper,workdir=/rw/work /newroot \
    2>/tmp/err || fail "mount overlay"

N=/newroot
mkdir -p $N/kmatrix
mount -t 9p -o "$O9P" kmatrix $N/kmatrix 2>/tmp/err || fail "mount 9p kmatrix (results)"

mount -t proc proc $N/proc || fail "mount proc"
mount -t sysfs sysfs $N/sys || fail "mount sysfs"
mount -t devtmpfs devtmpfs $N/dev || fail "mount devtmpfs"
mkdir -p $N/dev/pts $N/dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts $N/dev/pts
mount -t tmpfs -o mode=1777 tmpfs $N/dev/shm
mount -t tmpfs -o mode=1777 tmpfs $N/tmp || fail "mount /tmp"
mount -t tmpfs -o mode=0755 tmpfs $N/run || fail "mount /run"
mount -t bpf bpf $N/sys/fs/bpf || fail "mount bpffs"
mount -t tracefs tracefs $N/sys/kernel/tracing || fail "mount tracefs"
mount -t debugfs debugfs $N/sys/kernel/debug || fail "mount debugfs"
mount -t securityfs securityfs $N/sys/kernel/security 2>/dev/null
# cgroup2 where the host has it (tests/conftest.py uses /sys/fs/cgroup/unified).
mount -t tmpfs -o mode=0755 cgroup $N/sys/fs/cgroup || fail "mount /sys/fs/cgroup"
mkdir -p $N/sys/fs/cgroup/unified
mount -t cgroup2 cgroup2 $N/sys/fs/cgroup/unified || fail "mount cgroup2"

# A repository under a path the guest covered with its own tmpfs (a CI clone in /tmp):
# show it again, writable through an overlay of its own.
if [ -n "$REPO" ] && [ ! -d "$N$REPO" ]; then
    [ -d "/host$REPO" ] || fail "no repository at $REPO on the host"
    mkdir -p /rw/repo/upper /rw/repo/work "$N$REPO"
    mount -t overlay overlay \
        -o "lowerdir=/host$REPO,upperdir=/rw/repo/upper,workdir=/rw/repo/work" "$N$REPO" \
        2>/tmp/err || fail "mount overlay for the repository $REPO"
fi

# The kernel's modules and config, as a Debian system would have them.
[ -d "/host$KDIR/lib/modules/$REL" ] || fail "no modules at $KDIR/lib/modules/$REL"
mkdir -p $N/lib/modules/$REL $N/boot
mount --bind "/host$KDIR/lib/modules/$REL" $N/lib/modules/$REL || fail "bind modules"
cp "/host$KDIR/boot/config-$REL" $N/boot/ 2>/dev/null

# busybox for stage 2 (poweroff, timeout) and as the kernel's modprobe helper.
B=$N/run/kmatrix
mkdir -p $B/bin
cp /bin/busybox $B/bin/busybox || fail "copy busybox"
for a in modprobe insmod rmmod lsmod depmod poweroff timeout; do
    ln -s busybox $B/bin/$a
done
cp /stage2.sh $B/stage2.sh
echo /run/kmatrix/bin/modprobe > /proc/sys/kernel/modprobe
[ -n "$REPO" ] && echo "$REPO" > $B/repo

echo "kmatrix: switching root"
exec switch_root $N /run/kmatrix/bin/busybox sh /run/kmatrix/stage2.sh
fail "switch_root"
