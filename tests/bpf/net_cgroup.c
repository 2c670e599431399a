// cgroup hooks: skb ingress/egress, sock_create, connect4/bind4/sendmsg4, setsockopt,
// sysctl and sock_ops, each counting what it saw for UDP/TCP port `port`.
#include "net_common.h"
#include <linux/tcp.h>

char _license[] SEC("license") = "GPL";

#define SOL_IP 0
#define IP_TOS 1
#define SOCK_DGRAM 2

const volatile __u16 port = 9000;
const volatile __u16 redirect_port = 0;
const volatile __u32 deny = 1;

__u64 skb_in, skb_out, sock_created, connects, binds, sendmsgs, sockopts, sysctl_writes;
__u64 sockops_connect, sockops_active, sockops_passive;

static __always_inline int skb_ours(struct __sk_buff *skb)
{
	struct iphdr ip;
	struct udphdr udp;

	if (skb->protocol != bpf_htons(ETH_P_IP))
		return 0;
	if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)) || ip.ihl != 5 ||
	    ip.protocol != IPPROTO_UDP)
		return 0;
	if (bpf_skb_load_bytes(skb, sizeof(ip), &udp, sizeof(udp)))
		return 0;
	return udp.dest == bpf_htons(port);
}

SEC("cgroup_skb/ingress")
int skb_ingress(struct __sk_buff *skb)
{
	if (!skb_ours(skb))
		return 1;
	__sync_fetch_and_add(&skb_in, 1);
	return !deny;
}

SEC("cgroup_skb/egress")
int skb_egress(struct __sk_buff *skb)
{
	if (!skb_ours(skb))
		return 1;
	__sync_fetch_and_add(&skb_out, 1);
	return !deny;
}

SEC("cgroup/sock_create")
int sock_create(struct bpf_sock *sk)
{
	if (sk->family != 2 /* AF_INET */ || sk->type != SOCK_DGRAM)
		return 1;
	__sync_fetch_and_add(&sock_created, 1);
	return !deny;
}

SEC("cgroup/connect4")
int connect4(struct bpf_sock_addr *ctx)
{
	if (ctx->user_port == bpf_htons(port)) {
		__sync_fetch_and_add(&connects, 1);
		ctx->user_port = bpf_htons(redirect_port);
	}
	return 1;
}

SEC("cgroup/bind4")
int bind4(struct bpf_sock_addr *ctx)
{
	if (ctx->user_port != bpf_htons(port))
		return 1;
	__sync_fetch_and_add(&binds, 1);
	return !deny;
}

SEC("cgroup/sendmsg4")
int sendmsg4(struct bpf_sock_addr *ctx)
{
	if (ctx->user_port == bpf_htons(port)) {
		__sync_fetch_and_add(&sendmsgs, 1);
		ctx->user_port = bpf_htons(redirect_port);
	}
	return 1;
}

SEC("cgroup/setsockopt")
int setsockopt_tos(struct bpf_sockopt *ctx)
{
	if (ctx->level == SOL_IP && ctx->optname == IP_TOS) {
		__sync_fetch_and_add(&sockopts, 1);
		return !deny;
	}
	if (ctx->optlen > 4096)
		ctx->optlen = 0;  /* leave big options to the kernel */
	return 1;
}

SEC("cgroup/sysctl")
int sysctl_ro(struct bpf_sysctl *ctx)
{
	if (!ctx->write)
		return 1;
	__sync_fetch_and_add(&sysctl_writes, 1);
	return !deny;
}

SEC("sockops")
int sockops_count(struct bpf_sock_ops *ctx)
{
	if (ctx->remote_port != bpf_htonl(port) && ctx->local_port != port)
		return 1;
	switch (ctx->op) {
	case BPF_SOCK_OPS_TCP_CONNECT_CB:
		__sync_fetch_and_add(&sockops_connect, 1);
		break;
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
		__sync_fetch_and_add(&sockops_active, 1);
		break;
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		__sync_fetch_and_add(&sockops_passive, 1);
		break;
	}
	return 1;
}
