// Programs in sections libbpf does not know (cilium/ebpf's test objects use
// "socket_filter/...", "socket/N"): libbpf still opens the object, leaves those
// programs' type unset and fails only when one of them is loaded.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char _license[] SEC("license") = "GPL";

SEC("socket")
int known(struct __sk_buff *skb)
{
	return 7;
}

SEC("socket_filter/custom")
int custom(struct __sk_buff *skb)
{
	return 11;
}

SEC("?socket/2")
int custom_off(struct __sk_buff *skb)
{
	return 13;
}
