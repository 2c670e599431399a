// SPDX-License-Identifier: GPL-2.0
/* Relocations that cannot be satisfied, without a guard: the poisoned
 * instruction is reachable and the verifier rejects the program with
 * "invalid func unknown#195896080". */
#include "core_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

struct task_struct___old {
	long state;
} __attribute__((preserve_access_index));

struct task_struct___short {
	short pid;		/* the kernel's is a (signed) int: the load cannot be widened */
} __attribute__((preserve_access_index));

enum bpf_map_type___local {
	BPF_MAP_TYPE_NOT_THERE___local = 2,
};

SEC("raw_tp/sys_enter")
int core_unguarded_field(void *ctx)
{
	struct task_struct___old *old = (void *)bpf_get_current_task();

	return BPF_CORE_READ(old, state);
}

SEC("raw_tp/sys_exit")
int core_unguarded_memsz(void *ctx)
{
	struct task_struct___short *t = (void *)bpf_get_current_task_btf();

	return t->pid;
}

SEC("raw_tp/sched_switch")
int core_unguarded_enum(void *ctx)
{
	return bpf_core_enum_value(enum bpf_map_type___local, BPF_MAP_TYPE_NOT_THERE___local);
}
