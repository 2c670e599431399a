// xdp_drop: drop IPv4 packets by source address at the earliest point of the
// receive path (XDP), the DDoS-mitigation pattern: user space fills the `blocklist`
// hash map with attacking addresses while the program runs; each packet from one of
// them is dropped before the kernel allocates anything for it, and its counter in
// the map goes up. Per-action packet and byte counts go to a per-CPU array.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "GPL";

#define ETH_P_IP 0x0800

struct datarec {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);      /* IPv4 source address, network byte order */
	__type(value, __u64);    /* packets dropped */
} blocklist SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XDP_REDIRECT + 1);
	__type(key, __u32);      /* the XDP action */
	__type(value, struct datarec);
} stats SEC(".maps");

static __always_inline int count(struct xdp_md *ctx, __u32 action)
{
	struct datarec *rec = bpf_map_lookup_elem(&stats, &action);

	if (rec) {              /* per-CPU: no atomics needed */
		rec->packets++;
		rec->bytes += ctx->data_end - ctx->data;
	}
	return action;
}

SEC("xdp")
int xdp_drop(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip;
	__u64 *drops;

	if ((void *)(eth + 1) > data_end)
		return count(ctx, XDP_PASS);
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return count(ctx, XDP_PASS);
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return count(ctx, XDP_PASS);
	drops = bpf_map_lookup_elem(&blocklist, &ip->saddr);
	if (drops) {
		__sync_fetch_and_add(drops, 1);
		return count(ctx, XDP_DROP);
	}
	return count(ctx, XDP_PASS);
}
