// SPDX-License-Identifier: GPL-2.0
// Events for tests/test_ringbuf.py and tests/test_perf.py: one socket filter
// that emits the same `struct event` through a ring buffer and a perf buffer,
// so that the readers can decode records by BTF type name from the object.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct event {
	__u64 seq;
	__u32 cpu;
	__s16 delta;
	char tag[6];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 16);
} rb SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
	__uint(max_entries, 256);
} pb SEC(".maps");

__u64 seq;
/* keeps `struct event` in the object's BTF for the readers to find by name */
struct event *unused_event __attribute__((unused));

SEC("socket")
int emit(struct __sk_buff *skb)
{
	struct event e = {};

	e.seq = __sync_fetch_and_add(&seq, 1);
	e.cpu = bpf_get_smp_processor_id();
	e.delta = -(__s16)e.seq;
	__builtin_memcpy(e.tag, "event", 6);
	bpf_ringbuf_output(&rb, &e, sizeof(e), 0);
	bpf_perf_event_output(skb, &pb, BPF_F_CURRENT_CPU, &e, sizeof(e));
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
