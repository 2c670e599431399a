// A TCP congestion control written in BPF (Reno through the kernel's kfuncs), as a
// struct_ops map registered with a bpf_link (pycc) and without one (pycc_nolink).
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char _license[] SEC("license") = "GPL";

extern void tcp_reno_cong_avoid(struct sock *sk, __u32 ack, __u32 acked) __ksym;
extern __u32 tcp_reno_ssthresh(struct sock *sk) __ksym;
extern __u32 tcp_reno_undo_cwnd(struct sock *sk) __ksym;

__u64 inits;
__u64 acks;

SEC("struct_ops/pycc_init")
void BPF_PROG(pycc_init, struct sock *sk)
{
	__sync_fetch_and_add(&inits, 1);
}

SEC("struct_ops/pycc_ssthresh")
__u32 BPF_PROG(pycc_ssthresh, struct sock *sk)
{
	return tcp_reno_ssthresh(sk);
}

SEC("struct_ops/pycc_undo_cwnd")
__u32 BPF_PROG(pycc_undo_cwnd, struct sock *sk)
{
	return tcp_reno_undo_cwnd(sk);
}

SEC("struct_ops/pycc_cong_avoid")
void BPF_PROG(pycc_cong_avoid, struct sock *sk, __u32 ack, __u32 acked)
{
	__sync_fetch_and_add(&acks, 1);
	tcp_reno_cong_avoid(sk, ack, acked);
}

SEC(".struct_ops.link")
struct tcp_congestion_ops pycc = {
	.init = (void *)pycc_init,
	.ssthresh = (void *)pycc_ssthresh,
	.undo_cwnd = (void *)pycc_undo_cwnd,
	.cong_avoid = (void *)pycc_cong_avoid,
	.name = "pycc",
};

SEC(".struct_ops")
struct tcp_congestion_ops pycc_nolink = {
	.init = (void *)pycc_init,
	.ssthresh = (void *)pycc_ssthresh,
	.undo_cwnd = (void *)pycc_undo_cwnd,
	.cong_avoid = (void *)pycc_cong_avoid,
	.name = "pycc_nolink",
};
