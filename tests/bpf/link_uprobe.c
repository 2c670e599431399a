// uprobes/uretprobes on libc's getaddrinfo (the DNS-tracing case of references/001)
// and on a test binary, counted per process (tests/test_link_uprobe.py).
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char _license[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);	/* tgid */
	__type(value, __u64);
} calls SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u64);
} returns SEC(".maps");

char last_node[32];
__s64 last_ret;
__u64 cookie_sum;

static __always_inline void count(void *map)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u64 one = 1, *v = bpf_map_lookup_elem(map, &tgid);

	if (v)
		__sync_fetch_and_add(v, 1);
	else
		bpf_map_update_elem(map, &tgid, &one, BPF_NOEXIST);
}

SEC("uprobe/libc.so.6:getaddrinfo")
int BPF_KPROBE(dns_enter, const char *node)
{
	count(&calls);
	bpf_probe_read_user_str(last_node, sizeof(last_node), node);
	return 0;
}

SEC("uretprobe/libc.so.6:getaddrinfo")
int BPF_KRETPROBE(dns_exit, int ret)
{
	count(&returns);
	last_ret = ret;
	return 0;
}

SEC("uprobe")
int count_calls(struct pt_regs *ctx)
{
	count(&calls);
	__sync_fetch_and_add(&cookie_sum, bpf_get_attach_cookie(ctx));
	return 0;
}

SEC("uprobe.multi")
int multi_calls(struct pt_regs *ctx)
{
	count(&calls);
	__sync_fetch_and_add(&cookie_sum, bpf_get_attach_cookie(ctx));
	return 0;
}
