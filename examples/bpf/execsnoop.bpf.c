// execsnoop: one event per exec, with fields read from task_struct via CO-RE.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

struct event {
	__u32 pid;
	__u32 ppid;
	__u32 uid;
	__u32 filename_len;
	__u64 start_ns;
	char comm[16];
	char filename[128];
};

/* makes clang emit BTF for struct event, so user space can decode records by name */
const struct event *unused_event __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 18);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32);   /* uid */
	__type(value, __u64); /* execs */
} execs_by_uid SEC(".maps");

/* configuration, rewritten before load (a template, references/000) */
const volatile __u32 target_ppid = 0;
const volatile __u32 min_uid = 0;

__u64 dropped;

SEC("tracepoint/sched/sched_process_exec")
int handle_exec(struct trace_event_raw_sched_process_exec *ctx)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u32 ppid = BPF_CORE_READ(task, real_parent, tgid);
	__u32 uid = BPF_CORE_READ(task, cred, uid.val);

	if (target_ppid && ppid != target_ppid)
		return 0;
	if (uid < min_uid)
		return 0;

	__u64 one = 1, *n = bpf_map_lookup_elem(&execs_by_uid, &uid);
	if (n)
		__sync_fetch_and_add(n, 1);
	else
		bpf_map_update_elem(&execs_by_uid, &uid, &one, BPF_NOEXIST);

	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		__sync_fetch_and_add(&dropped, 1);
		return 0;
	}
	e->pid = BPF_CORE_READ(task, tgid);
	e->ppid = ppid;
	e->uid = uid;
	e->start_ns = BPF_CORE_READ(task, start_time);
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	unsigned int off = ctx->__data_loc_filename & 0xFFFF;
	long n_copied = bpf_probe_read_str(e->filename, sizeof(e->filename), (void *)ctx + off);
	e->filename_len = n_copied > 0 ? n_copied : 0;
	bpf_ringbuf_submit(e, 0);
	return 0;
}
