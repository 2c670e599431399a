// runqlat: how long runnable tasks wait on a CPU's run queue before they run, as a
// log2 histogram in microseconds. A task is stamped when it is woken up (or
// preempted while still runnable) and measured when sched_switch picks it.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

#define MAX_SLOTS 27
#define TASK_RUNNING 0

const volatile __u32 target_tgid = 0;   /* 0: every process */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32);     /* pid (thread id) */
	__type(value, __u64);   /* when it became runnable */
} start SEC(".maps");

/* slot i counts latencies of 2^(i-1) .. 2^i - 1 us (slot 1 also counts 0), as
 * ebpf.hist.log2_hist reads them */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} hist SEC(".maps");

static __always_inline __u32 log2_slot(__u64 v)
{
	__u32 slot = 1;

	for (int i = 0; i < MAX_SLOTS - 2 && v > 1; i++) {
		v >>= 1;
		slot++;
	}
	return slot;
}

static __always_inline void stamp(__u32 pid, __u32 tgid)
{
	__u64 ts;

	if (!pid || (target_tgid && tgid != target_tgid))
		return;
	ts = bpf_ktime_get_ns();
	bpf_map_update_elem(&start, &pid, &ts, BPF_ANY);
}

SEC("tp_btf/sched_wakeup")
int handle_wakeup(__u64 *ctx)
{
	struct task_struct *p = (void *)ctx[0];

	stamp(p->pid, p->tgid);
	return 0;
}

SEC("tp_btf/sched_wakeup_new")
int handle_wakeup_new(__u64 *ctx)
{
	struct task_struct *p = (void *)ctx[0];

	stamp(p->pid, p->tgid);
	return 0;
}

SEC("tp_btf/sched_switch")
int handle_switch(__u64 *ctx)
{
	struct task_struct *prev = (void *)ctx[1], *next = (void *)ctx[2];
	__u32 pid = next->pid, slot;
	__u64 *tsp, *count;

	if (prev->__state == TASK_RUNNING)      /* preempted: back on the queue */
		stamp(prev->pid, prev->tgid);
	tsp = bpf_map_lookup_elem(&start, &pid);
	if (!tsp)
		return 0;
	slot = log2_slot((bpf_ktime_get_ns() - *tsp) / 1000);
	bpf_map_delete_elem(&start, &pid);
	count = bpf_map_lookup_elem(&hist, &slot);
	if (count)
		__sync_fetch_and_add(count, 1);
	return 0;
}
