// netkit: verdicts on UDP packets to `port` on either side of a netkit pair, and
// run-order recording for the ordering test.
#include "net_common.h"

char _license[] SEC("license") = "GPL";

#define NETKIT_NEXT -1

const volatile __u16 port = 9000;
const volatile __s32 verdict = 0; /* NETKIT_PASS */

__u64 hits;
__u32 order[8];
__u32 order_len;

/* netkit packets start with an Ethernet header in both modes (L3 mode turns ARP off
 * and uses all-zero addresses) */
static __always_inline int ours(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	return udp_dport_l2(data, data_end) == port;
}

static __always_inline int act(struct __sk_buff *skb)
{
	if (!ours(skb))
		return NETKIT_NEXT;
	__sync_fetch_and_add(&hits, 1);
	return verdict;
}

SEC("netkit/primary")
int nk_primary(struct __sk_buff *skb)
{
	return act(skb);
}

SEC("netkit/peer")
int nk_peer(struct __sk_buff *skb)
{
	return act(skb);
}

static __always_inline int record(struct __sk_buff *skb, __u32 t)
{
	if (ours(skb)) {
		__u32 n = order_len;
		if (n < 8) {
			order[n] = t;
			order_len = n + 1;
		}
	}
	return NETKIT_NEXT;
}

SEC("netkit/primary") int nk_a(struct __sk_buff *skb) { return record(skb, 1); }
SEC("netkit/primary") int nk_b(struct __sk_buff *skb) { return record(skb, 2); }
SEC("netkit/primary") int nk_c(struct __sk_buff *skb) { return record(skb, 3); }
