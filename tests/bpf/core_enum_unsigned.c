// SPDX-License-Identifier: GPL-2.0
/* An unsigned 32-bit enumerator >= 2^31 read as a 64-bit value: clang emits it
 * zero-extended; libbpf sign-extends 32-bit enumerators and refuses the object
 * ("unexpected insn (LDIMM64) value"); ebpf relocates it. */
#include "core_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

SEC("raw_tp/sys_enter")
int core_enum_unsigned(void *ctx)
{
	__u64 type = bpf_core_enum_value(enum e820_type, E820_TYPE_SOFT_RESERVED);

	return type == 0xEFFFFFFFULL;
}
