// SPDX-License-Identifier: GPL-2.0
/* Relocations that cannot be satisfied on a current kernel, each guarded by an
 * existence check: the poisoned instructions are dead code and every program
 * loads. No maps, so tests can load the relocated instructions directly. */
#include "core_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

struct task_struct___old {
	long state;		/* renamed to __state in 5.14 */
} __attribute__((preserve_access_index));

struct task_struct___new {
	unsigned int __state;
} __attribute__((preserve_access_index));

struct task_struct___bits {
	unsigned int no_such_bit: 3;
	unsigned int in_execve: 1;
} __attribute__((preserve_access_index));

struct not_in_kernel___local {
	int a;
} __attribute__((preserve_access_index));

enum bpf_map_type___local {
	BPF_MAP_TYPE_NOT_THERE___local = 2,
};

SEC("raw_tp/sys_enter")
int core_guarded_field(void *ctx)
{
	struct task_struct___old *old = (void *)bpf_get_current_task();

	if (bpf_core_field_exists(old->state))
		return BPF_CORE_READ(old, state);
	return BPF_CORE_READ((struct task_struct___new *)old, __state);
}

SEC("raw_tp/sys_exit")
int core_guarded_enum(void *ctx)
{
	if (bpf_core_enum_value_exists(enum bpf_map_type___local, BPF_MAP_TYPE_NOT_THERE___local))
		return bpf_core_enum_value(enum bpf_map_type___local,
					   BPF_MAP_TYPE_NOT_THERE___local);
	return 0;
}

SEC("raw_tp/sched_switch")
int core_guarded_type(void *ctx)
{
	struct not_in_kernel___local *p = (void *)bpf_get_current_task();

	if (bpf_core_type_exists(struct not_in_kernel___local))
		return BPF_CORE_READ(p, a) + bpf_core_type_size(struct not_in_kernel___local);
	return 1;
}

SEC("raw_tp/sched_wakeup")
int core_guarded_bitfield(void *ctx)
{
	struct task_struct___bits *t = (void *)bpf_get_current_task();
	unsigned long long v = 0;

	if (bpf_core_field_exists(t->no_such_bit))
		v = BPF_CORE_READ_BITFIELD_PROBED(t, no_such_bit);
	return v + BPF_CORE_READ_BITFIELD_PROBED(t, in_execve);
}

SEC("raw_tp/sched_process_exec")
int core_guarded_direct(void *ctx)
{
	struct task_struct___old *t = (void *)bpf_get_current_task_btf();

	if (bpf_core_field_exists(t->state))
		return t->state;
	return ((struct task_struct___new *)t)->__state;
}
