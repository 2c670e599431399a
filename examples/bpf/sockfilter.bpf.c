// sockfilter: a socket filter on a raw packet socket. It sees the frames arriving on
// one interface, counts the IPv4 ones by protocol in an array map and sends the
// addresses and ports of each through a ring buffer. It returns 0, so the socket
// itself receives nothing: the program is the whole consumer.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "GPL";

#define ETH_P_IP 0x0800
#define ETH_HLEN 14
#define IP_FRAGMENT 0x1fff   /* fragment offset bits of iphdr.frag_off */
#define PACKET_OUTGOING 4

struct so_event {
	__u32 ifindex;
	__u32 pkt_type;          /* PACKET_HOST, PACKET_BROADCAST, ... */
	__u32 len;
	__u32 saddr;             /* network byte order */
	__u32 daddr;
	__u16 sport;             /* host byte order, 0 for protocols without ports */
	__u16 dport;
	__u8 protocol;
};

const struct so_event *unused_event __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 256);
	__type(key, __u32);      /* IP protocol number */
	__type(value, __u64);    /* packets */
} counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 18);
} events SEC(".maps");

SEC("socket")
int socket_handler(struct __sk_buff *skb)
{
	struct iphdr ip;
	struct so_event *e;
	__u32 proto;
	__u64 *count;
	__u16 ports[2] = {};

	/* a packet socket also gets a copy of every frame sent (on lo, each packet
	 * would show twice): keep what arrives */
	if (skb->pkt_type == PACKET_OUTGOING || skb->protocol != bpf_htons(ETH_P_IP))
		return 0;
	if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)) < 0)
		return 0;
	proto = ip.protocol;
	count = bpf_map_lookup_elem(&counts, &proto);
	if (count)
		__sync_fetch_and_add(count, 1);

	/* the ports of TCP and UDP are the transport header's first four bytes; only
	 * the first fragment of a datagram has them */
	if ((proto == IPPROTO_TCP || proto == IPPROTO_UDP) &&
	    !(bpf_ntohs(ip.frag_off) & IP_FRAGMENT))
		bpf_skb_load_bytes(skb, ETH_HLEN + ip.ihl * 4, ports, sizeof(ports));

	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e)
		return 0;
	e->ifindex = skb->ifindex;
	e->pkt_type = skb->pkt_type;
	e->len = skb->len;
	e->saddr = ip.saddr;
	e->daddr = ip.daddr;
	e->sport = bpf_ntohs(ports[0]);
	e->dport = bpf_ntohs(ports[1]);
	e->protocol = proto;
	bpf_ringbuf_submit(e, 0);
	return 0;
}
