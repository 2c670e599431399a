// tc: a traffic-control classifier on an interface's ingress. It reads the Ethernet
// and IPv4 headers directly from the packet (bounds-checked against data_end), prints
// the length and TTL of each IPv4 packet with bpf_printk, counts packets and bytes per
// IP protocol in a per-CPU array, and lets every packet through.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "GPL";

#define TC_ACT_OK 0
#define ETH_P_IP 0x0800

const volatile __u32 tag = 0;   /* in each line, to tell this run's lines apart */

struct stats {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 256);
	__type(key, __u32);          /* IP protocol number */
	__type(value, struct stats);
} counts SEC(".maps");

SEC("tc")
int tc_ingress(struct __sk_buff *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + sizeof(*eth);
	struct stats *s;
	__u32 proto;

	if ((void *)(ip + 1) > data_end)        /* the verifier insists on this check */
		return TC_ACT_OK;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	proto = ip->protocol;
	s = bpf_map_lookup_elem(&counts, &proto);
	if (s) {                                 /* this CPU's slot: no atomics needed */
		s->packets++;
		s->bytes += ctx->len;
	}
	bpf_printk("tc %u: Got IP packet: tot_len: %d, ttl: %d", tag,
		   bpf_ntohs(ip->tot_len), ip->ttl);
	return TC_ACT_OK;
}
