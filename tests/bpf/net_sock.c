// Socket-level programs: a socket filter, SO_REUSEPORT selection from a sockarray, and
// sockmap verdicts for sendmsg (sk_msg) and received streams (sk_skb).
#include "net_common.h"

char _license[] SEC("license") = "GPL";

#define NO_REDIRECT 0xffffffff

const volatile __u8 keep_char = 'k';
const volatile __u32 redirect_key = NO_REDIRECT;

__u64 kept, dropped;
__u32 target_index;
__u64 selected;
__u64 msgs, msg_bytes, skbs, skb_bytes;

struct {
	__uint(type, BPF_MAP_TYPE_REUSEPORT_SOCKARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} reuse_socks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} sock_map SEC(".maps");

/* UDP socket filter: keep datagrams whose payload starts with keep_char */
SEC("socket")
int keep_first_char(struct __sk_buff *skb)
{
	__u8 c;

	if (bpf_skb_load_bytes(skb, sizeof(struct udphdr), &c, 1) || c != keep_char) {
		__sync_fetch_and_add(&dropped, 1);
		return 0;
	}
	__sync_fetch_and_add(&kept, 1);
	return skb->len;
}

SEC("sk_reuseport")
int select_sock(struct sk_reuseport_md *md)
{
	__u32 key = target_index;

	if (bpf_sk_select_reuseport(md, &reuse_socks, &key, 0))
		return SK_DROP;
	__sync_fetch_and_add(&selected, 1);
	return SK_PASS;
}

SEC("sk_msg")
int msg_verdict(struct sk_msg_md *msg)
{
	__sync_fetch_and_add(&msgs, 1);
	__sync_fetch_and_add(&msg_bytes, msg->size);
	if (redirect_key != NO_REDIRECT)
		return bpf_msg_redirect_map(msg, &sock_map, redirect_key, BPF_F_INGRESS);
	return SK_PASS;
}

SEC("sk_skb/stream_verdict")
int skb_verdict(struct __sk_buff *skb)
{
	__sync_fetch_and_add(&skbs, 1);
	__sync_fetch_and_add(&skb_bytes, skb->len);
	if (redirect_key != NO_REDIRECT)
		return bpf_sk_redirect_map(skb, &sock_map, redirect_key, BPF_F_INGRESS);
	return SK_PASS;
}
