// BTF-defined maps, map-in-map with .values, prog array with .values, tail calls.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "loader_selftest.h"

char _license[] SEC("license") = "GPL";

struct pt { __u32 x; __u64 y; };

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 128);
	__type(key, __u32);
	__type(value, struct pt);
} points SEC(".maps");

struct inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
};
struct inner inner_a SEC(".maps"), inner_b SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 4);
	__type(key, __u32);
	__array(values, struct inner);
} outer SEC(".maps") = {
	.values = { [1] = &inner_a, [3] = &inner_b },
};

int tail_target(struct __sk_buff *skb);
int tail_other(struct __sk_buff *skb);

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 8);
	__type(key, __u32);
	__array(values, int (void *));
} jumps SEC(".maps") = {
	.values = { [2] = (void *)&tail_target, [5] = (void *)&tail_other },
};

SEC("tc")
int tail_target(struct __sk_buff *skb) { return 42; }

SEC("tc")
int tail_other(struct __sk_buff *skb) { return 43; }

SEC("tc")
int do_tail_call(struct __sk_buff *skb)
{
	__u32 idx = skb->mark;
	bpf_tail_call(skb, &jumps, idx);
	return 7; /* no program at idx */
}

SEC("syscall")
int check_maps(void *ctx)
{
	__u32 k = 1;
	struct pt v = { .x = 5, .y = 6 }, *p;
	ASSERT(bpf_map_update_elem(&points, &k, &v, BPF_ANY) == 0);
	p = bpf_map_lookup_elem(&points, &k);
	ASSERT(p && p->x == 5 && p->y == 6);
	void *m = bpf_map_lookup_elem(&outer, &k);
	ASSERT(m);
	__u32 k3 = 3, k0 = 0;
	ASSERT(bpf_map_lookup_elem(&outer, &k3));
	ASSERT(!bpf_map_lookup_elem(&outer, &k0));
	__u64 *slot = bpf_map_lookup_elem(m, &k0);
	ASSERT(slot);
	*slot = 77;
	return 0;
}
