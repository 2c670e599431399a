// A netfilter hook program: NF_DROP or NF_ACCEPT for IPv4 UDP packets to `port`.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char _license[] SEC("license") = "GPL";

#define NF_DROP 0
#define NF_ACCEPT 1

const volatile __u16 port = 9600;
const volatile __u32 verdict = NF_DROP;

__u64 seen;

SEC("netfilter")
int nf_udp(struct bpf_nf_ctx *ctx)
{
	struct sk_buff *skb = ctx->skb;
	unsigned char *head = skb->head;
	__u16 nh = skb->network_header;
	struct iphdr ip;
	struct udphdr udp;

	if (bpf_probe_read_kernel(&ip, sizeof(ip), head + nh) || ip.version != 4 ||
	    ip.ihl != 5 || ip.protocol != IPPROTO_UDP)
		return NF_ACCEPT;
	if (bpf_probe_read_kernel(&udp, sizeof(udp), head + nh + sizeof(ip)) ||
	    udp.dest != bpf_htons(port))
		return NF_ACCEPT;
	__sync_fetch_and_add(&seen, 1);
	return verdict;
}
