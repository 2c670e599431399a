// The per-endpoint tc template of tests/bpf/tc_template.c written the way most programs
// built against a kernel's vmlinux.h are: every packet header read through vmlinux.h's
// types, so the object carries CO-RE relocations (a loader resolves them against the
// running kernel's BTF), the 48 rules matched by a bpf_loop callback (verified once, not
// per rule), VLAN tags, IPv4, IPv6 with extension headers, TCP/UDP ports and ICMP type and
// code as the port (about 600 instructions). Same .rodata config and statistics map as
// tc_template.c; flows keep packets, bytes, first/last seen and the TCP flags seen.
// Used by bench/templates.py --template core and tests/test_templates_core.py.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char _license[] SEC("license") = "GPL";

#define TCX_PASS 0
#define TCX_DROP 2
#define NRULES 48
#define MAX_ENDPOINTS 4096
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8
#define PROTO_TCP 6
#define PROTO_UDP 17
#define PROTO_ICMP 1
#define PROTO_ICMPV6 58
#define MAX_VLANS 2
#define MAX_EXTHDRS 4

struct ep_rule {
	__u8 proto;     /* IPPROTO_*, 0 = any */
	__u8 action;    /* TCX_PASS or TCX_DROP */
	__u16 port_lo;  /* destination port range, host order */
	__u16 port_hi;
	__u16 pad;
	__u32 src_net;  /* IPv4 source prefix (network order), 0/0 = any (IPv6: any) */
	__u32 src_mask;
};

struct ep_config {
	__u32 endpoint_id;
	__u32 generation;
	__u32 ep_addr;        /* network order, 0 = any */
	__u16 service_port;   /* host order: UDP packets to it are counted in `service` */
	__u8 default_action;
	__u8 nrules;
	struct ep_rule rules[NRULES];
};

/* everything an endpoint differs in, rewritten before each load */
const volatile struct ep_config cfg = {};

struct ep_stats {
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
	__type(value, struct ep_stats);
} stats SEC(".maps");

struct ep_flow {
	__u32 saddr, daddr;
	__u16 sport, dport;
	__u32 endpoint;
};

struct ep_flow_stats {
	__u64 packets;
	__u64 bytes;
	__u64 first_ns;
	__u64 last_ns;
	__u32 tcp_flags;  /* TCP flags seen, ORed */
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct ep_flow);
	__type(value, struct ep_flow_stats);
} flows SEC(".maps");

struct packet {
	__u8 proto;
	__u8 v6;
	__u32 saddr;   /* IPv4 source, or the low word of an IPv6 source (flow key) */
	__u32 daddr;
	__u16 sport;   /* host order */
	__u16 dport;
	__u8 decided;
	__u8 action;
	__u8 tcp_flags;
};

/* One rule against the packet; 1 ends the loop (the first matching rule decides). */
static long match_rule(__u64 i, void *ctx)
{
	struct packet *p = ctx;
	if (i >= NRULES || i >= cfg.nrules)
		return 1;
	const volatile struct ep_rule *r = &cfg.rules[i];
	if (r->proto && r->proto != p->proto)
		return 0;
	if (p->dport < r->port_lo || p->dport > r->port_hi)
		return 0;
	if (r->src_mask && (p->v6 || (p->saddr & r->src_mask) != r->src_net))
		return 0;
	p->decided = 1;
	p->action = r->action;
	return 1;
}

/* The L4 ports at `l4` (TCP and UDP keep them at the same offsets); 0 when cut short. */
static __always_inline int read_ports(struct packet *p, void *l4, void *data_end)
{
	if (p->proto == PROTO_UDP) {
		struct udphdr *uh = l4;
		if ((void *)(uh + 1) > data_end)
			return 0;
		p->sport = bpf_ntohs(uh->source);
		p->dport = bpf_ntohs(uh->dest);
	} else if (p->proto == PROTO_TCP) {
		struct tcphdr *th = l4;
		if ((void *)(th + 1) > data_end)
			return 0;
		p->sport = bpf_ntohs(th->source);
		p->dport = bpf_ntohs(th->dest);
		p->tcp_flags = th->fin | th->syn << 1 | th->rst << 2 | th->psh << 3 |
			       th->ack << 4 | th->urg << 5 | th->ece << 6 | th->cwr << 7;
	} else if (p->proto == PROTO_ICMP || p->proto == PROTO_ICMPV6) {
		struct icmphdr *ic = l4;  /* type and code: the same bytes in ICMPv6 */
		if ((void *)(ic + 1) > data_end)
			return 0;
		p->dport = ic->type << 8 | ic->code;
	}
	return 1;
}

/* Past IPv6 extension headers (hop-by-hop, routing, destination options; a fragment
 * header ends the walk: later fragments carry no ports). The next header's start, or
 * NULL when cut short. */
static __always_inline void *skip_ipv6_ext(struct packet *p, void *hdr, void *data_end)
{
#pragma unroll
	for (int i = 0; i < MAX_EXTHDRS; i++) {
		switch (p->proto) {
		case 0:   /* hop-by-hop */
		case 43:  /* routing */
		case 60: { /* destination options */
			struct ipv6_opt_hdr *o = hdr;
			if ((void *)(o + 1) > data_end)
				return NULL;
			p->proto = o->nexthdr;
			hdr += (o->hdrlen + 1) * 8;
			break;
		}
		case 44: { /* fragment */
			struct frag_hdr *fh = hdr;
			if ((void *)(fh + 1) > data_end)
				return NULL;
			p->proto = fh->nexthdr;
			if (fh->frag_off & bpf_htons(0xFFF8))
				p->proto = 0xFF;  /* not the first fragment: no L4 header */
			return fh + 1;
		}
		default:
			return hdr;
		}
	}
	return hdr;
}

SEC("tcx/ingress")
int endpoint(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__u32 id = cfg.endpoint_id;
	struct ep_stats *st = bpf_map_lookup_elem(&stats, &id);
	if (!st)
		return TCX_PASS;
	st->packets++;
	st->bytes += skb->len;
	st->generation = cfg.generation;

	struct packet p = {};
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return TCX_DROP;
	void *l3 = eth + 1;
	__be16 h_proto = eth->h_proto;
#pragma unroll
	for (int i = 0; i < MAX_VLANS; i++) {
		if (h_proto != bpf_htons(ETH_P_8021Q) && h_proto != bpf_htons(ETH_P_8021AD))
			break;
		struct vlan_hdr *vh = l3;
		if ((void *)(vh + 1) > data_end)
			return TCX_DROP;
		h_proto = vh->h_vlan_encapsulated_proto;
		l3 = vh + 1;
	}
	if (h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = l3;
		if ((void *)(ip + 1) > data_end || ip->ihl != 5)
			return TCX_DROP;
		if (cfg.ep_addr && ip->daddr != cfg.ep_addr)
			return TCX_PASS;  /* not for this endpoint */
		p.proto = ip->protocol;
		p.saddr = ip->saddr;
		p.daddr = ip->daddr;
		if (!read_ports(&p, ip + 1, data_end))
			return TCX_DROP;
	} else if (h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = l3;
		if ((void *)(ip6 + 1) > data_end)
			return TCX_DROP;
		p.v6 = 1;
		p.proto = ip6->nexthdr;
		p.saddr = ip6->saddr.in6_u.u6_addr32[3];
		p.daddr = ip6->daddr.in6_u.u6_addr32[3];
		void *l4 = skip_ipv6_ext(&p, ip6 + 1, data_end);
		if (!l4 || !read_ports(&p, l4, data_end))
			return TCX_DROP;
	} else {
		return TCX_PASS;  /* ARP and the like: not policed */
	}
	if (p.proto == PROTO_UDP && p.dport == cfg.service_port)
		st->service++;

	p.action = cfg.default_action;
	bpf_loop(NRULES, match_rule, &p, 0);
	if (p.action != TCX_PASS) {
		st->denied++;
		return TCX_DROP;
	}
	st->allowed++;
	struct ep_flow f = { .saddr = p.saddr, .daddr = p.daddr, .sport = p.sport,
			     .dport = p.dport, .endpoint = id };
	__u64 now = bpf_ktime_get_ns();
	struct ep_flow_stats *fs = bpf_map_lookup_elem(&flows, &f);
	if (fs) {
		__sync_fetch_and_add(&fs->packets, 1);
		__sync_fetch_and_add(&fs->bytes, skb->len);
		fs->last_ns = now;
		fs->tcp_flags |= p.tcp_flags;
	} else {
		struct ep_flow_stats init = { .packets = 1, .bytes = skb->len, .first_ns = now,
					      .last_ns = now, .tcp_flags = p.tcp_flags };
		bpf_map_update_elem(&flows, &f, &init, BPF_ANY);
	}
	return TCX_PASS;
}
