// Loaded under a BPF token (issue 12, cause 8) by a process without CAP_BPF in the
// initial user namespace: an LRU hash (a map type that needs CAP_BPF), a .bss
// variable (an array map and the object's BTF) and an XDP program (CAP_NET_ADMIN).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char _license[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
} seen SEC(".maps");

__u64 runs;

SEC("xdp")
int count_packets(struct xdp_md *ctx)
{
	__u32 key = ctx->data_end - ctx->data;
	__u64 one = 1, *v;

	v = bpf_map_lookup_elem(&seen, &key);
	if (v)
		__sync_fetch_and_add(v, 1);
	else
		bpf_map_update_elem(&seen, &key, &one, BPF_ANY);
	__sync_fetch_and_add(&runs, 1);
	return XDP_PASS;
}
