// A cgroup LSM program (tests/test_link_lsm_cgroup.py): sockets of the cgroup it is
// attached to may not bind to `port`. lsm_cgroup programs return 1 to allow and 0 to
// deny (the caller gets EPERM), not -errno.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>

char _license[] SEC("license") = "GPL";

#define AF_INET 2
#define AF_INET6 10

enum { CALLS, DENIED, NCOUNTS };

const volatile __u16 port = 0; /* host order; set before loading */

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, NCOUNTS);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

static __always_inline void count(__u32 key)
{
	__u64 *v = bpf_map_lookup_elem(&counts, &key);

	if (v)
		__sync_fetch_and_add(v, 1);
}

SEC("lsm_cgroup/socket_bind")
int BPF_PROG(deny_bind, struct socket *sock, struct sockaddr *address, int addrlen)
{
	struct sockaddr_in sin = {}; /* sin6_port sits where sin_port does */

	count(CALLS);
	if (addrlen < (int)sizeof(sin))
		return 1;
	if (bpf_probe_read_kernel(&sin, sizeof(sin), address))
		return 1;
	if (sin.sin_family != AF_INET && sin.sin_family != AF_INET6)
		return 1;
	if (bpf_ntohs(sin.sin_port) != port)
		return 1;
	count(DENIED);
	return 0;
}
