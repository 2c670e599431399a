// SPDX-License-Identifier: GPL-2.0
/* CO-RE relocations of every kind, without branches on their results, so that
 * the verifier keeps every instruction (no dead code elimination) and the
 * kernel's xlated dump lines up with the object's instructions.
 * Results go to a global in .bss so that nothing is optimised away. */
#include "core_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

#ifndef bpf_core_field_signed /* libbpf 1.1's headers predate it */
#define bpf_core_field_signed(field...) \
	__builtin_preserve_field_info(___bpf_field_ref(field), BPF_FIELD_SIGNED)
#endif

/* Local flavors: matched against the kernel's task_struct by essential name. */
struct task_struct___old {
	long state;		/* renamed to __state in 5.14 */
	int pid;
} __attribute__((preserve_access_index));

struct task_struct___u16 {
	unsigned short flags;	/* the kernel's is unsigned int: loads are widened */
} __attribute__((preserve_access_index));

struct task_struct___good {
	int prio;		/* a subset of the kernel's fields, in another order */
	pid_t pid;
	unsigned int in_execve: 1;
} __attribute__((preserve_access_index));

struct task_struct___bad {
	long pid;		/* the kernel's is int: TYPE_MATCHES fails */
} __attribute__((preserve_access_index));

struct not_in_kernel___local {
	int a;
} __attribute__((preserve_access_index));

enum bpf_map_type___local {
	BPF_MAP_TYPE_RINGBUF___local = 1,
	BPF_MAP_TYPE_NOT_THERE___local = 2,
};

struct out {
	__u64 pid, tgid, ppid, comm1, uid, pid_link1;
	__u64 pid_size, comm_size, pid_off, comm3_off, pid_exists, pid_signed, flags_signed;
	__u64 in_execve, ip_summed, ip_summed_signed, pkt_type, cloned;
	__u64 dev_off, tstamp, dev_scratch_size, rbnode_off;
	__u64 ts_exists, ts_size, ts_matches, good_matches, bad_matches, pid_t_exists,
		pid_t_size, missing_exists, missing_size;
	__u64 ringbuf_exists, ringbuf_value, local_ringbuf_exists, local_missing_exists,
		perf_ctx, state_off, state_dead;
	__u64 tid_local, tid_kernel, tid_missing, tid_typedef;
	__u64 old_state_exists, old_pid_exists, old_pid_off;
	__u64 direct_pid, direct_comm2, direct_flags16, direct_prio;
} out;

/* A bitfield read with a probe read, without the macro's signedness branch. */
#define READ_BITFIELD_UNSIGNED(s, field) ({					\
	unsigned long long __v = 0;						\
	bpf_probe_read_kernel(&__v, __CORE_RELO(s, field, BYTE_SIZE),		\
			      (const void *)s + __CORE_RELO(s, field, BYTE_OFFSET));	\
	__v <<= __CORE_RELO(s, field, LSHIFT_U64);				\
	__v >>= __CORE_RELO(s, field, RSHIFT_U64);				\
	__v;									\
})

SEC("raw_tp/sys_enter")
int core_fields(void *ctx)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	struct sk_buff *skb = (void *)task; /* any kernel address does for probe reads */

	/* FIELD_BYTE_OFFSET through probe reads, nested pointers and arrays */
	out.pid = BPF_CORE_READ(task, pid);
	out.tgid = BPF_CORE_READ(task, tgid);
	out.ppid = BPF_CORE_READ(task, real_parent, tgid);
	out.comm1 = BPF_CORE_READ(task, comm[1]);
	out.uid = BPF_CORE_READ(task, cred, uid.val);
	out.pid_link1 = (__u64)BPF_CORE_READ(task, pid_links[1].next);

	/* FIELD_BYTE_SIZE / FIELD_BYTE_OFFSET / FIELD_EXISTS / FIELD_SIGNED as constants */
	out.pid_size = bpf_core_field_size(task->pid);
	out.comm_size = bpf_core_field_size(task->comm);
	out.pid_off = bpf_core_field_offset(task->pid);
	out.comm3_off = bpf_core_field_offset(task->comm[3]);
	out.pid_exists = bpf_core_field_exists(task->pid);
	out.pid_signed = bpf_core_field_signed(task->pid);
	out.flags_signed = bpf_core_field_signed(task->flags);

	/* bitfields: LSHIFT_U64 / RSHIFT_U64, in task_struct and in sk_buff's
	 * anonymous union of structs (a multi-bit one too) */
	out.in_execve = READ_BITFIELD_UNSIGNED(task, in_execve);
	out.ip_summed = READ_BITFIELD_UNSIGNED(skb, ip_summed);
	out.ip_summed_signed = bpf_core_field_signed(skb->ip_summed);
	out.pkt_type = READ_BITFIELD_UNSIGNED(skb, pkt_type);
	out.cloned = READ_BITFIELD_UNSIGNED(skb, cloned);

	/* anonymous unions and structs */
	out.dev_off = bpf_core_field_offset(skb->dev);
	out.tstamp = BPF_CORE_READ(skb, tstamp);
	out.dev_scratch_size = bpf_core_field_size(skb->dev_scratch);
	out.rbnode_off = bpf_core_field_offset(skb->rbnode);

	/* type based */
	out.ts_exists = bpf_core_type_exists(struct task_struct);
	out.ts_size = bpf_core_type_size(struct task_struct);
	out.ts_matches = bpf_core_type_matches(struct task_struct); /* char comm[]: signed here */
	out.good_matches = bpf_core_type_matches(struct task_struct___good);
	out.bad_matches = bpf_core_type_matches(struct task_struct___bad);
	out.pid_t_exists = bpf_core_type_exists(pid_t);
	out.pid_t_size = bpf_core_type_size(pid_t);
	out.missing_exists = bpf_core_type_exists(struct not_in_kernel___local);
	out.missing_size = bpf_core_type_size(struct not_in_kernel___local);
	out.tid_local = bpf_core_type_id_local(struct task_struct);
	out.tid_kernel = bpf_core_type_id_kernel(struct task_struct);
	out.tid_missing = bpf_core_type_id_kernel(struct not_in_kernel___local);
	out.tid_typedef = bpf_core_type_id_kernel(pid_t);

	/* enum values, with flavored enumerators, 64-bit and negative values */
	out.ringbuf_exists = bpf_core_enum_value_exists(enum bpf_map_type, BPF_MAP_TYPE_RINGBUF);
	out.ringbuf_value = bpf_core_enum_value(enum bpf_map_type, BPF_MAP_TYPE_RINGBUF);
	out.local_ringbuf_exists = bpf_core_enum_value(enum bpf_map_type___local,
						       BPF_MAP_TYPE_RINGBUF___local);
	out.local_missing_exists = bpf_core_enum_value_exists(enum bpf_map_type___local,
							      BPF_MAP_TYPE_NOT_THERE___local);
	out.perf_ctx = bpf_core_enum_value(enum perf_callchain_context, PERF_CONTEXT_KERNEL);
	out.state_off = bpf_core_enum_value(enum perf_event_state, PERF_EVENT_STATE_OFF);
	out.state_dead = bpf_core_enum_value(enum perf_event_state, PERF_EVENT_STATE_DEAD);

	/* flavors: a field that no longer exists, and one that does */
	out.old_state_exists = bpf_core_field_exists(((struct task_struct___old *)task)->state);
	out.old_pid_exists = bpf_core_field_exists(((struct task_struct___old *)task)->pid);
	out.old_pid_off = bpf_core_field_offset(((struct task_struct___old *)task)->pid);

	/* direct loads (LDX off) from a BTF pointer, including a widened load */
	struct task_struct *bt = bpf_get_current_task_btf();
	out.direct_pid = bt->pid;
	out.direct_comm2 = bt->comm[2];
	out.direct_flags16 = ((struct task_struct___u16 *)bt)->flags;
	out.direct_prio = bt->prio;
	return 0;
}
