// Network-namespace hooks: sk_lookup steering TCP connections for a port range to one
// socket (from a SOCKMAP), and a flow dissector counting the UDP flows it dissects.
#include "net_common.h"
#include <linux/tcp.h>

char _license[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} target SEC(".maps");

const volatile __u16 port_lo = 8000;
const volatile __u16 port_hi = 8100;
const volatile __u16 port = 9400;

__u64 steered;
__u64 dissected;

SEC("sk_lookup")
int steer(struct bpf_sk_lookup *ctx)
{
	if (ctx->protocol != IPPROTO_TCP || ctx->local_port < port_lo || ctx->local_port > port_hi)
		return SK_PASS;
	__u32 key = 0;
	struct bpf_sock *sk = bpf_map_lookup_elem(&target, &key);
	if (!sk)
		return SK_DROP;
	long err = bpf_sk_assign(ctx, sk, 0);
	bpf_sk_release(sk);
	if (err)
		return SK_DROP;
	__sync_fetch_and_add(&steered, 1);
	return SK_PASS;
}

SEC("flow_dissector")
int dissect(struct __sk_buff *skb)
{
	struct bpf_flow_keys *keys = skb->flow_keys;
	struct iphdr ip;
	struct udphdr udp;

	if (keys->n_proto != bpf_htons(ETH_P_IP))
		return BPF_DROP;
	if (bpf_skb_load_bytes(skb, keys->nhoff, &ip, sizeof(ip)) || ip.ihl != 5)
		return BPF_DROP;
	keys->addr_proto = ETH_P_IP;
	keys->ipv4_src = ip.saddr;
	keys->ipv4_dst = ip.daddr;
	keys->ip_proto = ip.protocol;
	keys->thoff = keys->nhoff + sizeof(ip);
	if (ip.protocol != IPPROTO_UDP)
		return BPF_OK;
	if (bpf_skb_load_bytes(skb, keys->thoff, &udp, sizeof(udp)))
		return BPF_DROP;
	keys->sport = udp.source;
	keys->dport = udp.dest;
	if (udp.dest == bpf_htons(port))
		__sync_fetch_and_add(&dissected, 1);
	return BPF_OK;
}
