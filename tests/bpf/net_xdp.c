// XDP: act on UDP packets to `port` (pass, drop, tx, redirect), counting per action.
#include "net_common.h"

char _license[] SEC("license") = "GPL";

const volatile __u16 port = 9000;
const volatile __u32 action = XDP_PASS;
const volatile __u32 redirect_ifindex = 0;

__u64 counts[8];  /* indexed by XDP action */

SEC("xdp")
int xdp_act(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;

	if (udp_dport_l2(data, data_end) != port)
		return XDP_PASS;
	__u32 a = action;
	if (a < 8)
		__sync_fetch_and_add(&counts[a], 1);
	if (a == XDP_REDIRECT)
		return bpf_redirect(redirect_ifindex, 0);
	return a;
}
