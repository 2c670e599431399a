// A struct_ops implementation as the kernel's selftests (bpf_dctcp, bpf_cubic) and
// scheduler/congestion-control tools write it: programs in SEC("struct_ops/...")
// that only get their attach target (the struct's BTF id, the member's index)
// from the .struct_ops variable referring to them. libbpf loads each such program
// on its own (`--each`), so `ebpf` must find the target without the link step.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char _license[] SEC("license") = "GPL";

SEC("struct_ops/rw_init")
void BPF_PROG(rw_init, struct sock *sk)
{
}

SEC("struct_ops/rw_ssthresh")
__u32 BPF_PROG(rw_ssthresh, struct sock *sk)
{
	const struct tcp_sock *tp = (const struct tcp_sock *)sk;

	return tp->snd_cwnd > 4 ? tp->snd_cwnd >> 1 : 2;
}

SEC("struct_ops/rw_undo_cwnd")
__u32 BPF_PROG(rw_undo_cwnd, struct sock *sk)
{
	const struct tcp_sock *tp = (const struct tcp_sock *)sk;

	return tp->snd_cwnd;
}

SEC("struct_ops/rw_cong_avoid")
void BPF_PROG(rw_cong_avoid, struct sock *sk, __u32 ack, __u32 acked)
{
}

SEC(".struct_ops")
struct tcp_congestion_ops ebpf_rw_cc = {
	.init = (void *)rw_init,
	.ssthresh = (void *)rw_ssthresh,
	.undo_cwnd = (void *)rw_undo_cwnd,
	.cong_avoid = (void *)rw_cong_avoid,
	.name = "ebpf_rw_cc",
};
