// USDT probes read with libbpf's usdt.bpf.h (tests/test_link_usdt.py).
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/usdt.bpf.h>

char _license[] SEC("license") = "GPL";

/* one row per probe hit: the arguments as bpf_usdt_arg reads them */
struct usdt_hit {
	__s64 args[5];
	__s64 cookie;
	__s32 arg_cnt;
	__s32 err;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, struct usdt_hit);
} hits SEC(".maps");

__u32 nhits;
__u32 ngated;
__s64 gated_sum;

SEC("usdt")
int BPF_USDT(on_tick, int i, long big, short neg, int c, int y)
{
	__u32 slot = i & 15; /* the target passes i = 1, 2, ... */
	struct usdt_hit *h = bpf_map_lookup_elem(&hits, &slot);
	long v;

	__sync_fetch_and_add(&nhits, 1);
	if (!h)
		return 0;
	h->args[0] = i;
	h->args[1] = big;
	h->args[2] = neg;
	h->args[3] = c;
	h->args[4] = y;
	h->cookie = bpf_usdt_cookie(ctx);
	h->arg_cnt = bpf_usdt_arg_cnt(ctx);
	h->err = bpf_usdt_arg(ctx, 7, &v); /* no such argument: -ENOENT */
	return 0;
}

SEC("usdt")
int BPF_USDT(on_gated, int i)
{
	__sync_fetch_and_add(&ngated, 1);
	__sync_fetch_and_add(&gated_sum, i);
	return 0;
}
