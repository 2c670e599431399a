// pythongc: CPython's garbage collections, from its USDT probes (python:gc__start
// with the generation, python:gc__done with the number of objects collected), like
// BCC's ugc. The probes' arguments are read with libbpf's <bpf/usdt.bpf.h>
// (BPF_USDT), whose spec maps user space fills when it attaches.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/usdt.bpf.h>

char LICENSE[] SEC("license") = "GPL";

struct start {
	__u64 ts;
	int generation;
};

struct event {
	__u32 pid;
	int generation;
	__u64 start_ns;
	__u64 elapsed_ns;
	__s64 collected;
};

const struct event *unused_event __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);             /* thread id */
	__type(value, struct start);
} starts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 16);
} events SEC(".maps");

SEC("usdt")
int BPF_USDT(gc_start, int generation)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct start s = { .ts = bpf_ktime_get_ns(), .generation = generation };

	bpf_map_update_elem(&starts, &tid, &s, BPF_ANY);
	return 0;
}

SEC("usdt")
int BPF_USDT(gc_done, long collected)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id;
	struct start *s = bpf_map_lookup_elem(&starts, &tid);
	struct event e = {};

	if (!s)
		return 0;
	e.pid = id >> 32;
	e.generation = s->generation;
	e.start_ns = s->ts;
	e.elapsed_ns = bpf_ktime_get_ns() - s->ts;
	e.collected = collected;
	bpf_map_delete_elem(&starts, &tid);
	bpf_ringbuf_output(&events, &e, sizeof(e), 0);
	return 0;
}
