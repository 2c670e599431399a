"""Attach programs to hooks. Every function returns a `Link` (a context manager)."""

from __future__ import annotations

from .auto import attach_program
from .base import Link, from_id, open_pinned
from .iter import IterLink, iter
from .kprobe import kprobe, kprobe_multi, kretprobe, kretsyscall, ksyscall
from .perf_event import MultiLink, PerfEventLink, attach_perf_event, perf_event
from .socket import SocketFilterLink, reuseport, socket_filter
from .tracing import lsm, raw_tracepoint, tracepoint, tracing
from .uprobe import uprobe, uprobe_multi, uretprobe
from .usdt import USDTLink, usdt, usdt_probes

__all__ = ["Link", "SocketFilterLink", "from_id", "open_pinned", "reuseport", "socket_filter"]
__all__ += [
    "IterLink",
    "MultiLink",
    "PerfEventLink",
    "USDTLink",
    "attach_perf_event",
    "attach_program",
    "iter",
    "kprobe",
    "kprobe_multi",
    "kretprobe",
    "kretsyscall",
    "ksyscall",
    "lsm",
    "perf_event",
    "raw_tracepoint",
    "tracepoint",
    "tracing",
    "uprobe",
    "uprobe_multi",
    "uretprobe",
    "usdt",
    "usdt_probes",
]

# -- networking hooks ------------------------------------------------------------------
from ._attach import ProgAttachLink, QueryResult, in_netns, net_link_target  # noqa: E402
from .cgroup import (  # noqa: E402
    CGROUP_ATTACH_TYPES,
    CgroupAttachFlags,
    CgroupLink,
    cgroup,
    cgroup_programs,
)
from .netfilter import NetfilterHook, NetfilterLink, netfilter  # noqa: E402
from .netkit import NetkitLink, netkit, netkit_programs  # noqa: E402
from .netns import NetNsLink, flow_dissector, netns_programs, sk_lookup  # noqa: E402
from .sockmap import SockmapLink, sockmap  # noqa: E402
from .struct_ops import (  # noqa: E402
    StructOpsLink,
    StructOpsMap,
    StructOpsSpec,
    load_struct_ops,
    read_struct_ops,
    require_struct_ops,
    resolve_struct_ops_programs,
    struct_ops,
    struct_ops_maps,
)
from .tc import TCFilter, TCLink, TCXLink, tc, tc_delete, tc_filters, tcx, tcx_programs  # noqa: E402
from .xdp import XDPLink, XDPMode, XDPNetlinkLink, xdp, xdp_info  # noqa: E402

__all__ += [
    "CGROUP_ATTACH_TYPES",
    "CgroupAttachFlags",
    "CgroupLink",
    "NetNsLink",
    "NetfilterHook",
    "NetfilterLink",
    "NetkitLink",
    "ProgAttachLink",
    "QueryResult",
    "SockmapLink",
    "StructOpsLink",
    "StructOpsMap",
    "StructOpsSpec",
    "TCFilter",
    "TCLink",
    "TCXLink",
    "XDPLink",
    "XDPMode",
    "XDPNetlinkLink",
    "cgroup",
    "cgroup_programs",
    "flow_dissector",
    "in_netns",
    "load_struct_ops",
    "net_link_target",
    "netfilter",
    "netkit",
    "netkit_programs",
    "netns_programs",
    "read_struct_ops",
    "require_struct_ops",
    "resolve_struct_ops_programs",
    "sk_lookup",
    "sockmap",
    "struct_ops",
    "struct_ops_maps",
    "tc",
    "tc_delete",
    "tc_filters",
    "tcx",
    "tcx_programs",
    "xdp",
    "xdp_info",
]
