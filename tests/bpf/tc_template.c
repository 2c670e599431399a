// A per-endpoint tc program template (tcx ingress) configured through one .rodata
// struct: the endpoint's identity and address, and a policy of 48 port/protocol rules,
// matched fully unrolled (about 1.5k instructions). Statistics go to a per-CPU array
// indexed by endpoint id, flows to an LRU hash. Used by bench/templates.py (each
// endpoint: set the config, load, swap into a tcx link) and tests/test_parallel.py
// (load_many of many configurations).
#include "net_common.h"
#include <linux/tcp.h>

char _license[] SEC("license") = "GPL";

#define TCX_PASS 0
#define TCX_DROP 2
#define NRULES 48
#define MAX_ENDPOINTS 4096

struct rule {
	__u8 proto;     /* IPPROTO_*, 0 = any */
	__u8 action;    /* TCX_PASS or TCX_DROP */
	__u16 port_lo;  /* destination port range, host order */
	__u16 port_hi;
	__u16 pad;
	__u32 src_net;  /* source prefix (network order), 0/0 = any */
	__u32 src_mask;
};

struct config {
	__u32 endpoint_id;
	__u32 generation;
	__u32 ep_addr;        /* network order, 0 = any */
	__u16 service_port;   /* host order: UDP packets to it are counted in `service` */
	__u8 default_action;
	__u8 nrules;
	struct rule rules[NRULES];
};

/* everything an endpoint differs in, rewritten before each load */
const volatile struct config cfg = {};

struct stats {
	__u64 packets;
	__u64 bytes;
	__u64 allowed;
	__u64 denied;
	__u64 service;     /* UDP packets to cfg.service_port: the replacement check */
	__u64 generation;  /* config generation of the program that counted last */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_ENDPOINTS);
	__type(key, __u32);
	__type(value, struct stats);
} stats SEC(".maps");

struct flow {
	__u32 saddr, daddr;
	__u16 sport, dport;
	__u32 endpoint;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct flow);
	__type(value, __u64);
} flows SEC(".maps");

#define barrier_var(var) asm volatile("" : "+r"(var))

static __always_inline __u64 is_eq(__u64 a, __u64 b)  /* a, b < 2^63 */
{
	__u64 x = a ^ b;
	barrier_var(x);
	return (x - 1) >> 63;
}

static __always_inline __u64 in_range(__u64 v, __u64 lo, __u64 hi)  /* < 2^63 */
{
	__u64 a = v - lo, b = hi - v;
	barrier_var(a);
	barrier_var(b);
	return ((a | b) >> 63) ^ 1;
}

/* The first matching rule decides; without branches on packet data, so the verifier
 * walks one path per rule. */
static __always_inline __u32 policy(__u8 proto, __u32 saddr, __u16 dport)
{
	__u64 decided = 0, action = cfg.default_action;
#pragma unroll
	for (int i = 0; i < NRULES; i++) {
		__u64 on = in_range(i, 0, (__u64)cfg.nrules - 1) & (cfg.nrules > 0);
		__u64 m = on & (is_eq(cfg.rules[i].proto, 0) | is_eq(cfg.rules[i].proto, proto)) &
			  is_eq(saddr & cfg.rules[i].src_mask, cfg.rules[i].src_net) &
			  in_range(dport, cfg.rules[i].port_lo, cfg.rules[i].port_hi);
		__u64 take = m & (decided ^ 1);
		action = take ? cfg.rules[i].action : action;
		decided |= m;
	}
	return action;
}

SEC("tcx/ingress")
int endpoint(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__u32 id = cfg.endpoint_id;
	struct stats *st = bpf_map_lookup_elem(&stats, &id);
	if (!st)
		return TCX_PASS;
	st->packets++;
	st->bytes += skb->len;
	st->generation = cfg.generation;

	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return TCX_DROP;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return TCX_PASS;  /* ARP, IPv6: not policed */
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end || ip->ihl != 5)
		return TCX_DROP;
	if (cfg.ep_addr && ip->daddr != cfg.ep_addr)
		return TCX_PASS;  /* not for this endpoint */
	__u16 sport = 0, dport = 0;
	if (ip->protocol == IPPROTO_UDP || ip->protocol == IPPROTO_TCP) {
		struct udphdr *uh = (void *)(ip + 1);  /* ports at the same offsets in both */
		if ((void *)(uh + 1) > data_end)
			return TCX_DROP;
		sport = bpf_ntohs(uh->source);
		dport = bpf_ntohs(uh->dest);
		if (ip->protocol == IPPROTO_UDP && dport == cfg.service_port)
			st->service++;
	}
	__u32 verdict = policy(ip->protocol, ip->saddr, dport);
	if (verdict != TCX_PASS) {
		st->denied++;
		return TCX_DROP;
	}
	st->allowed++;
	struct flow f = { .saddr = ip->saddr, .daddr = ip->daddr, .sport = sport,
			  .dport = dport, .endpoint = id };
	__u64 *n = bpf_map_lookup_elem(&flows, &f);
	if (n)
		__sync_fetch_and_add(n, 1);
	else {
		__u64 one = 1;
		bpf_map_update_elem(&flows, &f, &one, BPF_ANY);
	}
	return TCX_PASS;
}
