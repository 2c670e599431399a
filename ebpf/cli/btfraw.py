"""Moved to `ebpf.btf.raw` (it walks the BTF records, inside the btf package)."""

from ..btf.raw import raw_chunks, raw_lines, raw_records, type_ids

__all__ = ["raw_chunks", "raw_lines", "raw_records", "type_ids"]
