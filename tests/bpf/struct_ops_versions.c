// One object, two versions of struct tcp_congestion_ops (issue 12, cause 6): the
// flavor after "___" is dropped to find the kernel's struct; the programs are shared
// by both variables; "v2" has a member no kernel has (set to a program), so it can
// only be loaded with its map not created; "spare" is in SEC("?.struct_ops.link"):
// not created unless asked for.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char _license[] SEC("license") = "GPL";

extern void tcp_reno_cong_avoid(struct sock *sk, __u32 ack, __u32 acked) __ksym;
extern __u32 tcp_reno_ssthresh(struct sock *sk) __ksym;
extern __u32 tcp_reno_undo_cwnd(struct sock *sk) __ksym;

__u64 acks;
__u64 future_calls;

SEC("struct_ops/vcc_ssthresh")
__u32 BPF_PROG(vcc_ssthresh, struct sock *sk)
{
	return tcp_reno_ssthresh(sk);
}

SEC("struct_ops/vcc_undo_cwnd")
__u32 BPF_PROG(vcc_undo_cwnd, struct sock *sk)
{
	return tcp_reno_undo_cwnd(sk);
}

SEC("struct_ops/vcc_cong_avoid")
void BPF_PROG(vcc_cong_avoid, struct sock *sk, __u32 ack, __u32 acked)
{
	__sync_fetch_and_add(&acks, 1);
	tcp_reno_cong_avoid(sk, ack, acked);
}

// no variable refers to it and it is not autoloaded: it loads only when put into a
// created variable's member before loading (libbpf's shadow variables)
__u64 alt_acks;

SEC("?struct_ops/vcc_cong_avoid_alt")
void BPF_PROG(vcc_cong_avoid_alt, struct sock *sk, __u32 ack, __u32 acked)
{
	__sync_fetch_and_add(&alt_acks, 1);
	tcp_reno_cong_avoid(sk, ack, acked);
}

// only "v2" refers to it, through the member no kernel has
SEC("struct_ops/vcc_future")
void BPF_PROG(vcc_future, struct sock *sk)
{
	__sync_fetch_and_add(&future_calls, 1);
}

struct tcp_congestion_ops___v1 {
	__u32 (*ssthresh)(struct sock *sk);
	void (*cong_avoid)(struct sock *sk, __u32 ack, __u32 acked);
	__u32 (*undo_cwnd)(struct sock *sk);
	char name[16];
};

struct tcp_congestion_ops___v2 {
	__u32 (*ssthresh)(struct sock *sk);
	void (*cong_avoid)(struct sock *sk, __u32 ack, __u32 acked);
	__u32 (*undo_cwnd)(struct sock *sk);
	void (*future_op)(struct sock *sk);
	char name[16];
	__u32 future_flags;
};

SEC(".struct_ops.link")
struct tcp_congestion_ops___v1 vcc_v1 = {
	.ssthresh = (void *)vcc_ssthresh,
	.cong_avoid = (void *)vcc_cong_avoid,
	.undo_cwnd = (void *)vcc_undo_cwnd,
	.name = "vcc_v1",
};

SEC(".struct_ops.link")
struct tcp_congestion_ops___v2 vcc_v2 = {
	.ssthresh = (void *)vcc_ssthresh,
	.cong_avoid = (void *)vcc_cong_avoid,
	.undo_cwnd = (void *)vcc_undo_cwnd,
	.future_op = (void *)vcc_future,
	.name = "vcc_v2",
};

// the same version as v1 but with the member only a future kernel has left zero
SEC("?.struct_ops.link")
struct tcp_congestion_ops___v2 vcc_spare = {
	.ssthresh = (void *)vcc_ssthresh,
	.cong_avoid = (void *)vcc_cong_avoid,
	.undo_cwnd = (void *)vcc_undo_cwnd,
	.name = "vcc_spare",
};
