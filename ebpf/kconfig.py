"""Values for `.kconfig` externs: LINUX_KERNEL_VERSION, CONFIG_* and libbpf's virtual ones."""

from __future__ import annotations

import functools
import gzip
import os
import re

from .errors import NotSupportedError


def version_code(release: str) -> int:
    """KERNEL_VERSION(a, b, c) of a release string such as ``6.12.117+deb12-amd64`` or
    ``6.1.0-56-amd64`` (the leading ``a.b[.c]``; c capped at 255 like libbpf)."""
    m = re.match(r"\s*(\d+)\.(\d+)(?:\.(\d+))?", release)
    if m is None:
        raise NotSupportedError("kernel version detection", f"cannot parse release {release!r}")
    a, b, c = int(m[1]), int(m[2]), int(m[3] or 0)
    return (a << 16) + (b << 8) + min(c, 255)


@functools.cache
def kernel_version() -> int:
    """KERNEL_VERSION(a, b, c) of the running kernel, as libbpf computes it.

    Ubuntu's real upstream version is in /proc/version_signature
    ("Ubuntu 5.15.0-91.101-generic 5.15.131"); elsewhere it is the release
    (uname -r), whatever follows the version numbers ("+deb12-amd64", "-56-amd64").
    """
    try:
        with open("/proc/version_signature") as f:
            fields = f.read().split()
        if len(fields) >= 3:
            return version_code(fields[2])
    except (OSError, NotSupportedError):
        pass
    return version_code(os.uname().release)


@functools.cache
def kernel_config() -> dict[str, str]:
    """The running kernel's configuration, from /proc/config.gz or /boot/config-$(uname -r).

    Values are as written in the file: "y", "m", a number or a quoted string.
    Options that are "not set" are absent.
    """
    paths = ["/proc/config.gz", f"/boot/config-{os.uname().release}"]
    for path in paths:
        try:
            if path.endswith(".gz"):
                with gzip.open(path, "rt") as f:
                    text = f.read()
            else:
                with open(path) as f:
                    text = f.read()
        except OSError:
            continue
        config: dict[str, str] = {}
        for line in text.splitlines():
            if line.startswith("CONFIG_") and "=" in line:
                k, _, v = line.partition("=")
                config[k] = v
        return config
    raise NotSupportedError("kernel config", "neither /proc/config.gz nor "
                            f"/boot/config-{os.uname().release} is readable")


VIRTUAL = {
    "LINUX_KERNEL_VERSION",
    "LINUX_HAS_BPF_COOKIE",
    "LINUX_HAS_SYSCALL_WRAPPER",
}


def virtual_value(name: str) -> int:
    if name == "LINUX_KERNEL_VERSION":
        return kernel_version()
    if name == "LINUX_HAS_BPF_COOKIE":
        return 1
    if name == "LINUX_HAS_SYSCALL_WRAPPER":
        return int(os.uname().machine in ("x86_64", "aarch64", "s390x", "arm64", "riscv64"))
    raise KeyError(name)
