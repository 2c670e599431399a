// `ebpf load --each` loads every program, those marked SEC("?...") (not loaded by
// default) included (issue 12, cause 3).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char _license[] SEC("license") = "GPL";

SEC("socket")
int loaded_by_default(struct __sk_buff *skb)
{
	return 0;
}

SEC("?socket")
int loaded_on_request(struct __sk_buff *skb)
{
	return 1;
}
