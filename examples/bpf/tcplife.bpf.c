// tcplife: TCP sessions with their duration and bytes, when they close, from the
// sock:inet_sock_set_state tracepoint alone. A socket is stamped at its first
// state of life (SYN_SENT for connect(), SYN_RECV for an accepted connection); the
// process owning it is noted where the tracepoint runs in process context
// (SYN_SENT: connect(); LAST_ACK: close() after the peer closed); at CLOSE the
// session is reported with the byte counters of its tcp_sock.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

#define AF_INET 2

const volatile __u32 target_tgid = 0;   /* 0: every process */

struct owner {
	__u32 pid;
	char comm[16];
};

struct life_event {
	__u64 duration_ns;
	__u64 tx_bytes;
	__u64 rx_bytes;
	__u32 pid;
	__u16 family;
	__u16 lport;
	__u16 rport;
	__u16 pad;
	__u32 laddr[4];         /* network byte order; IPv4 in the first word */
	__u32 raddr[4];
	char comm[16];
};

const struct life_event *unused_life_event __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, const void *);      /* the socket */
	__type(value, __u64);           /* when it was born */
} births SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, const void *);
	__type(value, struct owner);
} owners SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 18);
} events SEC(".maps");

SEC("tracepoint/sock/inet_sock_set_state")
int handle_set_state(struct trace_event_raw_inet_sock_set_state *ctx)
{
	const void *sk = ctx->skaddr;
	int state = ctx->newstate;
	struct tcp_sock *tp = (struct tcp_sock *)sk;
	struct life_event *e;
	struct owner *who, me = {};
	__u64 *birth, now = bpf_ktime_get_ns();

	if (ctx->protocol != IPPROTO_TCP)
		return 0;
	if (state == TCP_SYN_SENT || state == TCP_SYN_RECV)
		bpf_map_update_elem(&births, &sk, &now, BPF_NOEXIST);
	if (state == TCP_SYN_SENT || state == TCP_LAST_ACK) {
		me.pid = bpf_get_current_pid_tgid() >> 32;
		bpf_get_current_comm(me.comm, sizeof(me.comm));
		bpf_map_update_elem(&owners, &sk, &me, BPF_ANY);
	}
	if (state != TCP_CLOSE)
		return 0;

	birth = bpf_map_lookup_elem(&births, &sk);
	if (!birth)             /* born before we started, or never connected */
		goto out;
	who = bpf_map_lookup_elem(&owners, &sk);
	if (target_tgid && (!who || who->pid != target_tgid))
		goto out;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e)
		goto out;
	e->duration_ns = now - *birth;
	e->tx_bytes = BPF_CORE_READ(tp, bytes_acked);
	e->rx_bytes = BPF_CORE_READ(tp, bytes_received);
	if (who) {
		e->pid = who->pid;
		__builtin_memcpy(e->comm, who->comm, sizeof(e->comm));
	} else {                /* closed in softirq: whoever is current */
		e->pid = bpf_get_current_pid_tgid() >> 32;
		bpf_get_current_comm(e->comm, sizeof(e->comm));
	}
	e->family = ctx->family;
	e->lport = ctx->sport;
	e->rport = ctx->dport;
	if (ctx->family == AF_INET) {   /* helper copies: see tcpconnect.bpf.c */
		bpf_probe_read_kernel(e->laddr, 4, ctx->saddr);
		bpf_probe_read_kernel(e->raddr, 4, ctx->daddr);
	} else {
		bpf_probe_read_kernel(e->laddr, 16, ctx->saddr_v6);
		bpf_probe_read_kernel(e->raddr, 16, ctx->daddr_v6);
	}
	bpf_ringbuf_submit(e, 0);
out:
	bpf_map_delete_elem(&births, &sk);
	bpf_map_delete_elem(&owners, &sk);
	return 0;
}
