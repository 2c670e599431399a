"""Kernel-matrix support for tests: declare what a test needs from the kernel.

    from kernelmatrix import requires

    @requires("ringbuf map", min_kernel="5.8")
    def test_ringbuf(): ...

    @requires("kprobe_multi", min_kernel="5.18", config="CONFIG_FPROBE")
    def test_kprobe_multi(): ...

`requires` marks the test ``kernel`` (so the kernel matrix runs it in every VM) and
records the declaration as that marker's arguments. The plugin
(tests/kernelmatrix/plugin.py, loaded with ``-p kernelmatrix.plugin`` or
``pytest_plugins = ["kernelmatrix.plugin"]`` in tests/conftest.py) then, before the
test runs:

- skips it on a kernel older than `min_kernel` ("needs kernel >= 5.8, running 5.4");
- skips it when the kernel's config is known (/proc/config.gz, /boot/config-<release>)
  and one of the `config` options is not set to y or m;
- calls the feature probe, if there is one (`probe=`, a callable feature, or a
  feature string naming an ``ebpf.features`` probe such as "map_type:RINGBUF"), and
  skips if it says no;

and after it ran: a test that SKIPPED anyway (for any reason: the probe, a
``pytest.skip`` in its body or a fixture) on a kernel that, by its declaration, must
support the feature (version >= `min_kernel` and every `config` option set) FAILS
instead, naming the declaration and the skip reason. So the library's claims about
which kernels support what are themselves tested. Without `min_kernel` a skip is always
allowed. ``--kmatrix-allow-skips`` turns the check off (for exotic local kernels).
"""

from __future__ import annotations

import gzip
import os
import platform
import re
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import pytest

__all__ = ["config_enabled", "kernel_config", "kernel_release", "kernel_version",
           "parse_version", "requires"]

F = TypeVar("F", bound=Callable[..., Any])

# The declaration is stored as the arguments of the (registered) `kernel` marker, so a
# run without the plugin neither warns about an unknown marker nor loses -m kernel.
MARKER = "kernel"


def parse_version(text: str) -> tuple[int, int, int]:
    """'6.12.117+deb12-amd64' -> (6, 12, 117); '5.8' -> (5, 8, 0)."""
    m = re.match(r"\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?", text)
    if not m:
        raise ValueError(f"not a kernel version: {text!r}")
    return (int(m.group(1)), int(m.group(2) or 0), int(m.group(3) or 0))


def kernel_release() -> str:
    """The running kernel's release (uname -r); KMATRIX_KERNEL_RELEASE overrides it."""
    return os.environ.get("KMATRIX_KERNEL_RELEASE") or platform.release()


def kernel_version() -> tuple[int, int, int]:
    return parse_version(kernel_release())


_config_cache: dict[str, dict[str, str] | None] = {}


def kernel_config(path: str | None = None) -> dict[str, str] | None:
    """The running kernel's build config as {"CONFIG_X": "y"}, or None when unknown.

    Read from the file named by KMATRIX_KERNEL_CONFIG if set (alone), else the first of
    /proc/config.gz, /boot/config-<release>, /lib/modules/<release>/config (the VM guests
    have /boot/config-<release>).
    """
    env = os.environ.get("KMATRIX_KERNEL_CONFIG")
    candidates = [path] if path else [env] if env else [
        "/proc/config.gz",
        f"/boot/config-{kernel_release()}",
        f"/lib/modules/{kernel_release()}/config",
    ]
    for c in candidates:
        if not c:
            continue
        if c in _config_cache:
            return _config_cache[c]
        try:
            raw = gzip.open(c).read() if c.endswith(".gz") else open(c, "rb").read()
        except OSError:
            continue
        cfg: dict[str, str] = {}
        for line in raw.decode(errors="replace").splitlines():
            if line.startswith("CONFIG_") and "=" in line:
                k, v = line.split("=", 1)
                cfg[k] = v.strip().strip('"')
        _config_cache[c] = cfg
        return cfg
    return None


def config_enabled(option: str, config: dict[str, str] | None = None) -> bool | None:
    """True/False when the option is (not) set to y or m; None when the config is unknown."""
    cfg = kernel_config() if config is None else config
    if cfg is None:
        return None
    if not option.startswith("CONFIG_"):
        option = "CONFIG_" + option
    return cfg.get(option) in ("y", "m")


def requires(
    feature: str | Callable[[], Any] | None = None,
    *,
    min_kernel: str | None = None,
    config: str | Sequence[str] = (),
    probe: Callable[[], Any] | None = None,
    reason: str = "",
    refusable: bool = False,
) -> Callable[[F], F]:
    """Declare what a test needs from the kernel (see the module docstring).

    feature: what the test needs. A string naming an ``ebpf.features`` probe is probed
        before the test runs: "ringbuf" (have_ringbuf()), "map_type:RINGBUF"
        (have_map_type(MapType.RINGBUF)), "program_type:LSM", "link_type:KPROBE_MULTI",
        "helper:KPROBE:get_func_ip", "btf_kind:ENUM64", "misc:<name>". Any other text
        ("kprobe_multi links") is a label for messages; a callable is the probe itself.
        A probe returns truthy when the feature is there; falsy, or raising
        ``ebpf.errors.NotSupportedError``, means missing (the test is skipped, which
        fails it where min_kernel says it must be supported).
    min_kernel: first kernel version with the feature ("5.18"). From that version on
        the test must not skip.
    config: kernel config option(s) the feature also depends on ("CONFIG_FPROBE").
    probe: an explicit probe, if `feature` is a name.
    refusable: some builds of a kernel that has the feature refuse it by policy even to
        a privileged process (e.g. the `bpf_map_elem` iterator, arena maps): then a skip
        is allowed outside the kernel matrix's guests, and fails only inside them.
    """
    if min_kernel is not None:
        parse_version(min_kernel)  # fail at import time on a typo
    if callable(feature):
        probe, name = feature, getattr(feature, "__name__", repr(feature))
    else:
        name = feature or ""
    configs = (config,) if isinstance(config, str) else tuple(config)
    configs = tuple(c if c.startswith("CONFIG_") else "CONFIG_" + c for c in configs)
    # A mark: decorates a test, or goes into pytest.param(..., marks=requires(...)).
    mark = pytest.mark.kernel(feature=name, min_kernel=min_kernel, config=configs,
                              probe=probe, reason=reason, refusable=refusable)
    return mark  # type: ignore[return-value]
