# Stage 2 of the kernel-matrix guest: run by busybox sh as PID 1 inside the overlay root
# (see init.sh). Runs /kmatrix/cmd.sh (written by the host runner) under a timeout with
# its output teed to the console and /kmatrix/output.log, records the exit code in
# /kmatrix/exit_code, copies the kernel's BTF to /kmatrix/vmlinux, and powers off.

BB=/run/kmatrix/bin/busybox
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/run/kmatrix/bin
export HOME=/root TERM=dumb LANG=C.UTF-8 LC_ALL=C.UTF-8
export PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 KMATRIX_GUEST=1
TIMEOUT=1200
[ -f /kmatrix/env.sh ] && . /kmatrix/env.sh

# Seen by the host as "the kernel booted": from here on a failure is the tests' own.
echo "KMATRIX-BOOTED $($BB uname -r) $($BB cut -d' ' -f1 /proc/uptime)s"
$BB date +%s > /kmatrix/booted

$BB cat /proc/mounts > /kmatrix/mounts

if [ -r /sys/kernel/btf/vmlinux ]; then
    $BB cp /sys/kernel/btf/vmlinux /kmatrix/vmlinux.tmp && $BB mv /kmatrix/vmlinux.tmp /kmatrix/vmlinux
fi

cd "${KMATRIX_REPO:-/}" || echo "kmatrix: cannot cd to $KMATRIX_REPO"
(
    $BB timeout -s KILL "$TIMEOUT" /bin/sh /kmatrix/cmd.sh </dev/null 2>&1
    echo $? > /kmatrix/exit_code.tmp
) | $BB tee /kmatrix/output.log
rc=$($BB cat /kmatrix/exit_code.tmp 2>/dev/null)
$BB mv /kmatrix/exit_code.tmp /kmatrix/exit_code
echo "KMATRIX-EXIT ${rc:-?} $($BB cut -d' ' -f1 /proc/uptime)s"
$BB sync
$BB poweroff -f
$BB sleep 30
