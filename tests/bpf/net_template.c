// An endpoint program template (tcx ingress), configured per endpoint through .rodata
// like Cilium's per-endpoint programs (references/000): the endpoint's identity and
// address, and a small policy of port/protocol rules. Shared maps hold per-endpoint
// statistics and a connection table. Used by bench/replace.py and
// tests/test_link_net_replace.py: every packet to the endpoint's service port is
// counted, so a packet that passed while no program was attached would show up as
// received but not counted.
#include "net_common.h"
#include <linux/ipv6.h>
#include <linux/tcp.h>

struct icmphdr_min {
	__u8 type;
	__u8 code;
	__u16 checksum;
	__u32 rest;
};
#define ICMP_ECHOREPLY 0
#define ICMP_ECHO 8

char _license[] SEC("license") = "GPL";

#define TCX_NEXT -1
#define TCX_PASS 0
#define TCX_DROP 2
#define MAX_RULES 256
#define MAX_ENDPOINTS 1024

struct rule {
	__u8 proto;     /* IPPROTO_*, 0 = any */
	__u8 allow;
	__u16 port_lo;  /* destination port range, host order */
	__u16 port_hi;
	__u16 pad;
	__u32 src_net;  /* source prefix (network order), 0/0 = any */
	__u32 src_mask;
};

struct ep_stats {
	__u64 packets;
	__u64 bytes;
	__u64 allowed;
	__u64 denied;
	__u64 established;
	__u64 service;      /* UDP packets to service_port (the replacement test counts these) */
	__u64 by_proto[4];  /* tcp, udp, icmp, other */
	__u32 generation;   /* config generation of the program that counted last */
	__u32 pad;
};

struct ct_key {
	__u32 saddr, daddr;
	__u16 sport, dport;
	__u8 proto;
	__u8 pad[3];
	__u32 endpoint;
};

struct ct_val {
	__u64 packets;
	__u32 generation;
	__u32 flags;
};

/* per-endpoint configuration, rewritten before each load */
const volatile __u32 endpoint_id = 0;
const volatile __u32 generation = 0;
const volatile __u32 ep_addr = 0;        /* network order */
const volatile __u16 service_port = 0;   /* host order */
const volatile __u32 nrules = 0;
const volatile __u8 default_allow = 1;
const volatile struct rule rules[MAX_RULES] = {};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_ENDPOINTS);
	__type(key, __u32);
	__type(value, struct ep_stats);
} ep_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct ct_key);
	__type(value, struct ct_val);
} conntrack SEC(".maps");

static __always_inline int proto_slot(__u8 proto)
{
	switch (proto) {
	case IPPROTO_TCP: return 0;
	case IPPROTO_UDP: return 1;
	case IPPROTO_ICMP: return 2;
	default: return 3;
	}
}

/* Rule matching without branches on packet data (the barriers keep clang from turning
 * the arithmetic back into comparisons): each rule costs the verifier one path, so
 * verification time is linear in the number of rules, whatever their values.
 * `policy` is a global function: verified once, on its own. */
#define barrier_var(var) asm volatile("" : "+r"(var))

static __always_inline __u64 is_eq(__u64 a, __u64 b)  /* a, b < 2^63 */
{
	__u64 x = a ^ b;
	barrier_var(x);
	return (x - 1) >> 63;
}

static __always_inline __u64 is_le(__u64 a, __u64 b)  /* a, b < 2^63 */
{
	__u64 d = b - a;
	barrier_var(d);
	return (d >> 63) ^ 1;
}

/* The first rule matching (protocol, source prefix, destination port range) decides. */
__noinline int policy(__u8 proto, __u32 saddr, __u16 dport)
{
	for (__u32 i = 0; i < MAX_RULES; i++) {
		if (i >= nrules)
			break;
		const volatile struct rule *r = &rules[i];
		__u64 m = (is_eq(r->proto, 0) | is_eq(r->proto, proto)) &
			  is_eq(saddr & r->src_mask, r->src_net) &
			  is_le((__u16)(dport - r->port_lo), (__u16)(r->port_hi - r->port_lo));
		if (m)
			return r->allow;
	}
	return default_allow;
}

static __always_inline int verdict(struct __sk_buff *skb, struct ep_stats *st, __u8 proto,
				   __u32 saddr, __u32 daddr, __u16 sport, __u16 dport)
{
	struct ct_key key = {
		.saddr = saddr, .daddr = daddr, .sport = sport, .dport = dport,
		.proto = proto, .endpoint = endpoint_id,
	};
	struct ct_val *ct = bpf_map_lookup_elem(&conntrack, &key);
	if (ct) {
		__sync_fetch_and_add(&ct->packets, 1);
		ct->generation = generation;
		__sync_fetch_and_add(&st->established, 1);
		__sync_fetch_and_add(&st->allowed, 1);
		return TCX_PASS;
	}
	if (!policy(proto, saddr, dport)) {
		__sync_fetch_and_add(&st->denied, 1);
		return TCX_DROP;
	}
	struct ct_val val = { .packets = 1, .generation = generation };
	bpf_map_update_elem(&conntrack, &key, &val, BPF_ANY);
	__sync_fetch_and_add(&st->allowed, 1);
	return TCX_PASS;
}

static __always_inline int handle_ipv4(struct __sk_buff *skb, struct ep_stats *st,
				       void *l3, void *data_end)
{
	struct iphdr *ip = l3;
	if ((void *)(ip + 1) > data_end || ip->version != 4)
		return TCX_DROP;
	if (ep_addr && ip->daddr != ep_addr)
		return TCX_PASS;  /* not for this endpoint */
	__u32 hlen = ip->ihl * 4;
	if (hlen < sizeof(*ip) || hlen > 60)
		return TCX_DROP;
	void *l4 = l3 + hlen;
	__u8 proto = ip->protocol;
	__sync_fetch_and_add(&st->by_proto[proto_slot(proto)], 1);
	__u16 sport = 0, dport = 0;
	if (proto == IPPROTO_TCP) {
		struct tcphdr *th = l4;
		if ((void *)(th + 1) > data_end)
			return TCX_DROP;
		sport = bpf_ntohs(th->source);
		dport = bpf_ntohs(th->dest);
	} else if (proto == IPPROTO_UDP) {
		struct udphdr *uh = l4;
		if ((void *)(uh + 1) > data_end)
			return TCX_DROP;
		sport = bpf_ntohs(uh->source);
		dport = bpf_ntohs(uh->dest);
		if (dport == service_port)
			__sync_fetch_and_add(&st->service, 1);
	} else if (proto == IPPROTO_ICMP) {
		struct icmphdr_min *ic = l4;
		if ((void *)(ic + 1) > data_end)
			return TCX_DROP;
		if (ic->type != ICMP_ECHO && ic->type != ICMP_ECHOREPLY)
			return TCX_PASS;
	}
	return verdict(skb, st, proto, ip->saddr, ip->daddr, sport, dport);
}

static __always_inline int handle_ipv6(struct __sk_buff *skb, struct ep_stats *st,
				       void *l3, void *data_end)
{
	struct ipv6hdr *ip6 = l3;
	if ((void *)(ip6 + 1) > data_end)
		return TCX_DROP;
	__u8 proto = ip6->nexthdr;
	__sync_fetch_and_add(&st->by_proto[proto_slot(proto)], 1);
	/* IPv6 policy is "allow": only count */
	__sync_fetch_and_add(&st->allowed, 1);
	return TCX_PASS;
}

SEC("tcx/ingress")
int endpoint(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__u32 id = endpoint_id;
	struct ep_stats *st = bpf_map_lookup_elem(&ep_stats, &id);
	if (!st)
		return TCX_PASS;
	__sync_fetch_and_add(&st->packets, 1);
	__sync_fetch_and_add(&st->bytes, skb->len);
	st->generation = generation;

	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return TCX_DROP;
	switch (eth->h_proto) {
	case bpf_htons(ETH_P_IP):
		return handle_ipv4(skb, st, eth + 1, data_end);
	case bpf_htons(ETH_P_IPV6):
		return handle_ipv6(skb, st, eth + 1, data_end);
	case bpf_htons(ETH_P_ARP):
		return TCX_PASS;
	default:
		return TCX_PASS;
	}
}
