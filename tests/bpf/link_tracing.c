// Tracepoints, raw tracepoints, tp_btf, perf_event sampling and iterators
// (tests/test_link_tracing.py). Compiled against the running kernel's vmlinux.h.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

char _license[] SEC("license") = "GPL";

#define NR_GETPID 39 /* x86_64 */

const volatile __u32 target_pid = 0;

enum link_slot {
	SLOT_TP_GETPID = 0,
	SLOT_TP_COOKIE,
	SLOT_RAW_GETPID,
	SLOT_BTF_GETPID,
	SLOT_EXECS,
	SLOT_SAMPLES,
	SLOT_RAW_COOKIE,
	SLOT_COUNT,
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SLOT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u64);
} samples_per_cpu SEC(".maps");

static __always_inline void bump(__u32 slot, __u64 by)
{
	__u64 *v = bpf_map_lookup_elem(&counts, &slot);

	if (v)
		__sync_fetch_and_add(v, by);
}

static __always_inline void store(__u32 slot, __u64 value)
{
	bpf_map_update_elem(&counts, &slot, &value, BPF_ANY);
}

static __always_inline int mine(void)
{
	return (bpf_get_current_pid_tgid() >> 32) == target_pid;
}

SEC("tracepoint/syscalls/sys_enter_getpid")
int tp_getpid(void *ctx)
{
	if (!mine())
		return 0;
	bump(SLOT_TP_GETPID, 1);
	store(SLOT_TP_COOKIE, bpf_get_attach_cookie(ctx));
	return 0;
}

SEC("raw_tp/sys_enter")
int raw_sys_enter(struct bpf_raw_tracepoint_args *ctx)
{
	if (mine() && ctx->args[1] == NR_GETPID)
		bump(SLOT_RAW_GETPID, 1);
	return 0;
}

/* BPF cookies on raw tracepoints need Linux 6.10: loaded only by the test that uses it */
SEC("?raw_tp/sys_enter")
int raw_cookie(struct bpf_raw_tracepoint_args *ctx)
{
	if (mine() && ctx->args[1] == NR_GETPID)
		store(SLOT_RAW_COOKIE, bpf_get_attach_cookie(ctx));
	return 0;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(btf_sys_enter, struct pt_regs *regs, long id)
{
	if (mine() && id == NR_GETPID)
		bump(SLOT_BTF_GETPID, 1);
	return 0;
}

SEC("tracepoint/sched/sched_process_exec")
int on_exec(void *ctx)
{
	bump(SLOT_EXECS, 1);
	return 0;
}

SEC("perf_event")
int on_sample(struct bpf_perf_event_data *ctx)
{
	__u32 cpu = bpf_get_smp_processor_id();
	__u64 *v = bpf_map_lookup_elem(&samples_per_cpu, &cpu);

	if (v)
		__sync_fetch_and_add(v, 1);
	bump(SLOT_SAMPLES, 1);
	return 0;
}

SEC("iter/task")
int dump_task(struct bpf_iter__task *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct *task = ctx->task;

	if (!task)
		return 0;
	if (ctx->meta->seq_num == 0)
		BPF_SEQ_PRINTF(seq, "tgid pid comm\n");
	BPF_SEQ_PRINTF(seq, "%d %d %s\n", task->tgid, task->pid, task->comm);
	return 0;
}

SEC("iter/task")
int dump_task_v2(struct bpf_iter__task *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct *task = ctx->task;

	if (!task || task->pid != task->tgid)
		return 0;
	BPF_SEQ_PRINTF(seq, "v2 %d\n", task->tgid);
	return 0;
}

SEC("iter/bpf_map")
int dump_map(struct bpf_iter__bpf_map *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct bpf_map *map = ctx->map;

	if (!map)
		return 0;
	BPF_SEQ_PRINTF(seq, "%u %s %u\n", map->id, map->name, map->max_entries);
	return 0;
}

SEC("iter/bpf_map_elem")
int dump_elems(struct bpf_iter__bpf_map_elem *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	__u32 *key = ctx->key;
	__u64 *value = ctx->value;

	if (!key || !value)
		return 0;
	bpf_seq_write(seq, key, sizeof(*key));
	bpf_seq_write(seq, value, sizeof(*value));
	return 0;
}
