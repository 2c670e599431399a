// tcpretrans: TCP retransmissions, from the tcp:tcp_retransmit_skb tracepoint. Each
// one goes to user space with the socket's addresses, ports and state.
//
// The tracepoint's record is declared here rather than taken from vmlinux.h: its
// struct is trace_event_raw_tcp_event_sk_skb up to Linux 6.12 and
// trace_event_raw_tcp_retransmit_skb (with an `err` field at the end) from 6.13, but
// the fields used here have the same offsets in both, as the tracepoint's format file
// (/sys/kernel/tracing/events/tcp/tcp_retransmit_skb/format) shows.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

#define AF_INET 2

struct retransmit_record {
	__u64 common;           /* common_type, common_flags, common_preempt_count, common_pid */
	const void *skbaddr;
	const void *skaddr;
	int state;
	__u16 sport;
	__u16 dport;
	__u16 family;
	__u8 saddr[4];
	__u8 daddr[4];
	__u8 saddr_v6[16];
	__u8 daddr_v6[16];
};

struct retrans_event {
	__u32 pid;
	int state;
	__u16 family;
	__u16 lport;
	__u16 rport;
	__u16 pad;
	__u32 laddr[4];         /* network byte order; IPv4 in the first word */
	__u32 raddr[4];         /* (words: a __u8 array would decode as a C string) */
};

const struct retrans_event *unused_retrans_event __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 16);
} events SEC(".maps");

SEC("tracepoint/tcp/tcp_retransmit_skb")
int handle_retransmit(struct retransmit_record *ctx)
{
	struct retrans_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e)
		return 0;
	/* usually a timer or softirq: the current task is whoever was interrupted */
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->state = ctx->state;
	e->family = ctx->family;
	e->lport = ctx->sport;  /* host byte order already */
	e->rport = ctx->dport;
	e->pad = 0;
	/* copied with a helper: the addresses are not aligned for direct context loads */
	if (ctx->family == AF_INET) {
		bpf_probe_read_kernel(e->laddr, 4, ctx->saddr);
		bpf_probe_read_kernel(e->raddr, 4, ctx->daddr);
	} else {
		bpf_probe_read_kernel(e->laddr, 16, ctx->saddr_v6);
		bpf_probe_read_kernel(e->raddr, 16, ctx->daddr_v6);
	}
	bpf_ringbuf_submit(e, 0);
	return 0;
}
