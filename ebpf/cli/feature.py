"""`ebpf feature probe`: what this kernel supports, in bpftool's sections and JSON field
names — system configuration (sysctls of the BPF JIT and of unprivileged bpf(), the kernel
config options bpftool lists), the bpf() syscall, program types, map types, helpers per
program type, miscellaneous features — plus bpf_link types and BTF kinds."""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import InvalidArgumentError, NotSupportedError
from .common import add_json, emit

__all__ = ["CONFIG_OPTIONS", "probe", "register"]

#: The kernel config options bpftool's feature probe reports, in its order.
CONFIG_OPTIONS = (
    "CONFIG_BPF", "CONFIG_BPF_SYSCALL", "CONFIG_HAVE_EBPF_JIT", "CONFIG_BPF_JIT",
    "CONFIG_BPF_JIT_ALWAYS_ON", "CONFIG_DEBUG_INFO_BTF", "CONFIG_DEBUG_INFO_BTF_MODULES",
    "CONFIG_CGROUPS", "CONFIG_CGROUP_BPF", "CONFIG_CGROUP_NET_CLASSID",
    "CONFIG_SOCK_CGROUP_DATA", "CONFIG_BPF_EVENTS", "CONFIG_KPROBE_EVENTS",
    "CONFIG_UPROBE_EVENTS", "CONFIG_TRACING", "CONFIG_FTRACE_SYSCALLS",
    "CONFIG_FUNCTION_ERROR_INJECTION", "CONFIG_BPF_KPROBE_OVERRIDE", "CONFIG_NET",
    "CONFIG_XDP_SOCKETS", "CONFIG_LWTUNNEL_BPF", "CONFIG_NET_ACT_BPF", "CONFIG_NET_CLS_BPF",
    "CONFIG_NET_CLS_ACT", "CONFIG_NET_SCH_INGRESS", "CONFIG_XFRM", "CONFIG_IP_ROUTE_CLASSID",
    "CONFIG_IPV6_SEG6_BPF", "CONFIG_BPF_LIRC_MODE2", "CONFIG_BPF_STREAM_PARSER",
    "CONFIG_NETFILTER_XT_MATCH_BPF", "CONFIG_BPFILTER", "CONFIG_BPFILTER_UMH",
    "CONFIG_TEST_BPF", "CONFIG_HZ",
)

_SYSCTLS = ("unprivileged_bpf_disabled", "bpf_jit_enable", "bpf_jit_harden",
            "bpf_jit_kallsyms", "bpf_jit_limit")
_SYSCTL_DIRS = {"unprivileged_bpf_disabled": "/proc/sys/kernel/"}


def _sysctl(name: str) -> int | None:
    path = _SYSCTL_DIRS.get(name, "/proc/sys/net/core/") + name
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def _config() -> dict[str, str]:
    from ..kconfig import kernel_config  # on use: a subcommand loads only what it needs

    try:
        return kernel_config()
    except NotSupportedError:
        return {}


def _have_syscall() -> bool:
    from .._sys.syscall import bpf_errno  # on use: a subcommand loads only what it needs
    from .._sys.types import BPF_PROG_GET_NEXT_ID, GetIdAttr  # on use

    return bpf_errno(BPF_PROG_GET_NEXT_ID, GetIdAttr()) != -38  # ENOSYS


def probe(*, helpers: bool = True) -> dict[str, Any]:
    """Everything `ebpf feature probe --json` prints."""
    from .. import features  # on use: a subcommand loads only what it needs

    system: dict[str, Any] = {}
    for name in _SYSCTLS:
        value = _sysctl(name)
        system[name] = -1 if value is None and name == "unprivileged_bpf_disabled" else value
    config = _config()
    for opt in CONFIG_OPTIONS:
        system[opt] = config.get(opt)
    r = features.probe_all(helpers=helpers)
    out: dict[str, Any] = {
        "system_config": system,
        "syscall_config": {"have_bpf_syscall": _have_syscall()},
        "program_types": {f"have_{n}_prog_type": ok for n, ok in r["program_types"].items()},
        "map_types": {f"have_{n}_map_type": ok for n, ok in r["map_types"].items()},
    }
    if helpers:
        out["helpers"] = {f"{n}_available_helpers": names
                          for n, names in r["helpers"].items()}
    out["misc"] = {f"have_{n}": ok for n, ok in r["misc"].items()}
    out["link_types"] = {f"have_{n}_link_type": ok for n, ok in r["link_types"].items()}
    out["btf_kinds"] = {f"have_{n}_btf_kind": ok for n, ok in r["btf_kinds"].items()}
    return out


_UNPRIV = {0: "bpf() syscall for unprivileged users is enabled",
           1: "bpf() syscall restricted to privileged users (without recovery)",
           2: "bpf() syscall restricted to privileged users (admin can change)"}
_JIT = {0: "JIT compiler is disabled", 1: "JIT compiler is enabled",
        2: "JIT compiler is enabled with debugging traces in kernel logs"}
_HARDEN = {0: "JIT compiler hardening is disabled",
           1: "JIT compiler hardening is enabled for unprivileged users",
           2: "JIT compiler hardening is enabled for all users"}
_KALLSYMS = {0: "JIT compiler kallsyms exports are disabled",
             1: "JIT compiler kallsyms exports are enabled for root"}


def _text(d: dict[str, Any]) -> str:
    from .. import features  # on use: a subcommand loads only what it needs

    s = d["system_config"]
    lines = ["Scanning system configuration..."]
    for key, texts, unknown in (
            ("unprivileged_bpf_disabled", _UNPRIV,
             "Unable to retrieve required privileges for bpf() syscall"),
            ("bpf_jit_enable", _JIT, "Unable to retrieve JIT-compiler status"),
            ("bpf_jit_harden", _HARDEN, "Unable to retrieve JIT hardening status"),
            ("bpf_jit_kallsyms", _KALLSYMS, "Unable to retrieve JIT kallsyms export status")):
        v = s.get(key)
        lines.append(texts.get(v, f"{key} is {v}") if v is not None and v != -1 else unknown)
    limit = s.get("bpf_jit_limit")
    lines.append(f"Global memory limit for JIT compiler for unprivileged users is {limit} bytes"
                 if limit is not None else "Unable to retrieve global memory limit for JIT "
                 "compiler for unprivileged users")
    for opt in CONFIG_OPTIONS:
        v = s.get(opt)
        lines.append(f"{opt} is set to {v}" if v is not None else f"{opt} is not set")
    lines += ["", "Scanning system call availability...",
              "bpf() syscall is available" if d["syscall_config"]["have_bpf_syscall"]
              else "bpf() syscall is NOT available", ""]

    def avail(ok: bool) -> str:
        return "is available" if ok else "is NOT available"

    for key, label, prefix, suffix in (
            ("program_types", "eBPF program_type", "have_", "_prog_type"),
            ("map_types", "eBPF map_type", "have_", "_map_type"),
            ("link_types", "bpf_link type", "have_", "_link_type"),
            ("btf_kinds", "BTF kind", "have_", "_btf_kind")):
        lines.append(f"Scanning eBPF {key.replace('_', ' ')}..."
                     if key in ("program_types", "map_types")
                     else f"Scanning {key.replace('_', ' ')}...")
        for name, ok in d[key].items():
            lines.append(f"{label} {name.removeprefix(prefix).removesuffix(suffix)} "
                         f"{avail(ok)}")
        lines.append("")
    if "helpers" in d:
        lines.append("Scanning eBPF helper functions...")
        for name, helpers in d["helpers"].items():
            prog = name.removesuffix("_available_helpers")
            lines.append(f"eBPF helpers supported for program type {prog}:")
            lines.extend(f"\t- {h}" for h in helpers)
        lines.append("")
    lines.append("Scanning miscellaneous eBPF features...")
    for name, ok in d["misc"].items():
        short = name.removeprefix("have_")
        lines.append(f"{features.MISC_FEATURES.get(short, short)} {avail(ok)}")
    return "\n".join(lines)


def _cmd_probe(args: argparse.Namespace) -> int:
    words = [w for w in args.target if w not in ("kernel", "full")]
    if words:
        raise InvalidArgumentError(f"unexpected {' '.join(words)!r}: `ebpf feature probe "
                                   "[kernel]` probes the running kernel")
    emit(args, probe(helpers=not args.no_helpers), _text)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `feature` and its verbs to the command line."""
    p = sub.add_parser("feature", help="what this kernel supports (bpftool feature)")
    verbs = p.add_subparsers(dest="action", required=True)
    pr = verbs.add_parser("probe", help="probe system configuration, program/map types, "
                          "helpers and other features")
    pr.add_argument("target", nargs="*", metavar="kernel")
    pr.add_argument("--no-helpers", action="store_true",
                    help="skip the per-program-type helper scan")
    add_json(pr)
    pr.set_defaults(func=_cmd_probe)
