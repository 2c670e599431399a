// SPDX-License-Identifier: GPL-2.0
// Reload soak (bench/soak.py, tests/test_soak.py): a CO-RE raw tracepoint program
// (sys_enter: no tracefs needed) that sends one ring-buffer event per getpid() of the
// process named in .rodata, so a parse + load + attach + read + close cycle can be
// repeated many times.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

struct soak_event {
	__u32 tgid;
	__u32 ppid;
	__u64 seq;
	__u64 start_ns;
};

/* keeps `struct soak_event` in the object's BTF for readers to decode by name */
const struct soak_event *unused_soak_event __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 12);
} soak_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} soak_count SEC(".maps");

/* template configuration, rewritten before each load */
const volatile __u32 target_tgid = 0;

__u64 seq;

#define SOAK_NR_GETPID 39 /* x86_64 */

SEC("raw_tp/sys_enter")
int soak_getpid(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u32 tgid = BPF_CORE_READ(task, tgid);
	__u32 zero = 0;
	__u64 *n;

	if (tgid != target_tgid || ctx->args[1] != SOAK_NR_GETPID)
		return 0;
	n = bpf_map_lookup_elem(&soak_count, &zero);
	if (n)
		__sync_fetch_and_add(n, 1);
	struct soak_event *e = bpf_ringbuf_reserve(&soak_events, sizeof(*e), 0);
	if (!e)
		return 0;
	e->tgid = tgid;
	e->ppid = BPF_CORE_READ(task, real_parent, tgid);
	e->seq = __sync_fetch_and_add(&seq, 1);
	e->start_ns = BPF_CORE_READ(task, start_time);
	bpf_ringbuf_submit(e, 0);
	return 0;
}
