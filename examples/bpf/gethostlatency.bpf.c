// gethostlatency: how long each getaddrinfo() call takes, in every process using
// libc. A uprobe on the function's entry stores the start time and the host name by
// thread; a uretprobe on its return computes the latency and sends an event.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

#define HOST_LEN 80

struct event {
	__u32 pid;
	int ret;
	__u64 delta_ns;
	char comm[16];
	char host[HOST_LEN];
};

const struct event *unused_event __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32);             /* thread id */
	__type(value, struct event);    /* filled on entry, completed on return */
} starts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 16);
} events SEC(".maps");

const volatile __u32 target_pid = 0;   /* 0: every process */

/* BPF_KPROBE/BPF_KRETPROBE read arguments and return values from pt_regs: the same
 * for uprobes (libbpf 1.2 also spells them BPF_UPROBE/BPF_URETPROBE) */
SEC("uprobe")
int BPF_KPROBE(lookup_entry, const char *node)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 pid = id >> 32, tid = (__u32)id;
	struct event e = {};

	if (target_pid && pid != target_pid)
		return 0;
	e.pid = pid;
	e.delta_ns = bpf_ktime_get_ns();
	bpf_get_current_comm(&e.comm, sizeof(e.comm));
	bpf_probe_read_user_str(&e.host, sizeof(e.host), node);
	bpf_map_update_elem(&starts, &tid, &e, BPF_ANY);
	return 0;
}

SEC("uretprobe")
int BPF_KRETPROBE(lookup_return, int ret)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct event *start = bpf_map_lookup_elem(&starts, &tid);

	if (!start)
		return 0;
	start->delta_ns = bpf_ktime_get_ns() - start->delta_ns;
	start->ret = ret;
	bpf_ringbuf_output(&events, start, sizeof(*start), 0);
	bpf_map_delete_elem(&starts, &tid);
	return 0;
}
