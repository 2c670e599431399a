// SPDX-License-Identifier: GPL-2.0
/* A small object exercising the ELF reader: programs in several sections, a
 * BTF-defined map in .maps, global data in .data/.rodata/.bss, a subprogram
 * called from two programs, and a program that is not autoloaded ("?").
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} config SEC(".maps");

__u64 packets = 1;               /* .data */
const volatile __u32 target_pid;  /* .rodata */
__u64 seen;                      /* .bss */

static __noinline int bump(__u32 key)
{
	__u64 one = 1, *v = bpf_map_lookup_elem(&counts, &key);

	if (v)
		__sync_fetch_and_add(v, 1);
	else
		bpf_map_update_elem(&counts, &key, &one, BPF_ANY);
	return 0;
}

SEC("xdp")
int smoke_xdp(struct xdp_md *ctx)
{
	packets++;
	bump(ctx->ingress_ifindex);
	return XDP_PASS;
}

SEC("tracepoint/syscalls/sys_enter_getpid")
int smoke_tp(void *ctx)
{
	__u32 pid = bpf_get_current_pid_tgid() >> 32;

	if (target_pid && pid != target_pid)
		return 0;
	seen++;
	return bump(pid);
}

SEC("?socket")
int smoke_socket(struct __sk_buff *skb)
{
	__u32 key = 0, *cfg = bpf_map_lookup_elem(&config, &key);

	return cfg ? *cfg : skb->len;
}

char LICENSE[] SEC("license") = "GPL";
