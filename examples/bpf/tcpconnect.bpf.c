// tcpconnect: every active TCP connection attempt (connect(2)), from the
// sock:inet_sock_set_state tracepoint. A socket moving from CLOSE to SYN_SENT is a
// connect() in progress, and the tracepoint fires in the calling process's context,
// so the current pid and comm are the connecting process's. The source address is
// chosen by then; the source port is not yet.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

#define AF_INET 2
#define AF_INET6 10

const volatile __u32 target_tgid = 0;   /* 0: every process */
const volatile __u16 target_dport = 0;  /* 0: every port */

struct connect_event {
	__u32 pid;
	__u32 uid;
	__u16 family;
	__u16 dport;
	__u32 saddr[4];         /* network byte order; IPv4 in the first word */
	__u32 daddr[4];
	char comm[16];
};

const struct connect_event *unused_connect_event __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 18);
} events SEC(".maps");

SEC("tracepoint/sock/inet_sock_set_state")
int handle_set_state(struct trace_event_raw_inet_sock_set_state *ctx)
{
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	struct connect_event *e;

	if (ctx->protocol != IPPROTO_TCP || ctx->oldstate != TCP_CLOSE ||
	    ctx->newstate != TCP_SYN_SENT)
		return 0;
	if ((target_tgid && pid != target_tgid) || (target_dport && ctx->dport != target_dport))
		return 0;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e)
		return 0;
	e->pid = pid;
	e->uid = (__u32)bpf_get_current_uid_gid();
	e->family = ctx->family;
	e->dport = ctx->dport;
	/* copied with a helper: the verifier refuses loads through a context pointer
	 * moved by a (CO-RE relocated) offset, which is what copying an array yields */
	if (ctx->family == AF_INET) {
		bpf_probe_read_kernel(e->saddr, 4, ctx->saddr);
		bpf_probe_read_kernel(e->daddr, 4, ctx->daddr);
	} else {
		bpf_probe_read_kernel(e->saddr, 16, ctx->saddr_v6);
		bpf_probe_read_kernel(e->daddr, 16, ctx->daddr_v6);
	}
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	bpf_ringbuf_submit(e, 0);
	return 0;
}
