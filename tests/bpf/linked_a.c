// SPDX-License-Identifier: GPL-2.0
/* First half of a program linked from two files (tests/test_linker.py); the other
 * half is linked_b.c. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

/* The map both files use; linked_b.c declares it extern. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} linked_shared SEC(".maps");

int a_data = 5;
const volatile int a_rodata = 7;
int a_bss;
int __weak weak_var = 1;      /* linked_b.c has the strong definition */
int __weak a_only_weak = 40;  /* no strong definition anywhere */

extern int b_global(int x);                       /* defined in linked_b.c */
__weak int weak_func(int x) { return x + 100; }   /* linked_b.c's strong one wins */
__hidden int hidden_func(int x) { return x * 3; } /* called from linked_b.c */
static __noinline int static_func(int x) { return x - 1; } /* linked_b.c has its own */

SEC("xdp")
int linked_xdp_a(struct xdp_md *ctx)
{
	__u32 k = 0;
	__u64 *v = bpf_map_lookup_elem(&linked_shared, &k);
	int exists = bpf_core_field_exists(ctx->ingress_ifindex);

	if (v)
		*v += 1;
	a_bss = b_global(a_data) + weak_func(a_rodata) + hidden_func(1) + static_func(a_data) +
		weak_var + a_only_weak + exists;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
