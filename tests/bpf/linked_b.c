// SPDX-License-Identifier: GPL-2.0
/* Second half of the program linked from linked_a.c and this file. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

extern struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} linked_shared SEC(".maps");

int b_data = 9;
int weak_var = 2;
__u64 b_bss;
const volatile int b_rodata = 11;

__noinline int b_global(int x) { return x * 2 + b_rodata; }
int weak_func(int x) { return x + 200; }
extern int hidden_func(int x);
static __noinline int static_func(int x) { return x - 2; }
static volatile int b_static = 13; /* reached through the .data section symbol */

SEC("xdp")
int linked_xdp_b(struct xdp_md *ctx)
{
	__u32 k = 1;
	__u64 *v = bpf_map_lookup_elem(&linked_shared, &k);

	b_bss = hidden_func(b_data) + static_func(b_data) + bpf_core_type_size(struct xdp_md) +
		b_static;
	if (v)
		*v += b_bss;
	return XDP_PASS;
}

SEC("socket")
int linked_sock_b(struct __sk_buff *skb)
{
	return b_global(skb->len);
}

char LICENSE[] SEC("license") = "GPL";
