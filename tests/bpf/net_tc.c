// tc / tcx: verdicts on UDP packets to `port`, and run-order recording for tcx ordering.
#include "net_common.h"
#include <linux/pkt_cls.h>

char _license[] SEC("license") = "GPL";

#define TCX_NEXT -1

const volatile __u16 port = 9000;
const volatile __s32 verdict = TC_ACT_OK;
const volatile __u32 tag = 0;

__u64 hits;
__u32 order[8];
__u32 order_len;

static __always_inline int ours(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	return udp_dport_l2(data, data_end) == port;
}

/* classic cls_bpf in direct-action mode */
SEC("tc")
int tc_act(struct __sk_buff *skb)
{
	if (!ours(skb))
		return TC_ACT_OK;
	__sync_fetch_and_add(&hits, 1);
	return verdict;
}

/* tcx: count, give the verdict (TCX_NEXT lets the next program run) */
SEC("tcx/ingress")
int tcx_act(struct __sk_buff *skb)
{
	if (!ours(skb))
		return TCX_NEXT;
	__sync_fetch_and_add(&hits, 1);
	return verdict;
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
	return TCX_NEXT;
}

SEC("tcx/ingress") int tcx_a(struct __sk_buff *skb) { return record(skb, 1); }
SEC("tcx/ingress") int tcx_b(struct __sk_buff *skb) { return record(skb, 2); }
SEC("tcx/ingress") int tcx_c(struct __sk_buff *skb) { return record(skb, 3); }
SEC("tcx/ingress") int tcx_d(struct __sk_buff *skb) { return record(skb, 4); }
