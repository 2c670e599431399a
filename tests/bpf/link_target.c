// A program with a global function, the target of freplace and of fentry/fexit
// on BPF programs (tests/test_link_trampoline.py).
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char _license[] SEC("license") = "GPL";

__noinline int get_value(int x)
{
	/* global (non-static) functions are verified on their own and can be replaced */
	return x + 1;
}

SEC("tc")
int tc_target(struct __sk_buff *skb)
{
	return get_value(skb->len);
}
