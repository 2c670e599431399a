// Kernel module BTF (issue 12, cause 5): nf_conntrack's kfuncs, an fentry on one of its
// functions and CO-RE against one of its types. Debian's kernels build nf_conntrack as a
// module, so all three resolve in /sys/kernel/btf/nf_conntrack there (on a kernel with
// nf_conntrack built in they resolve in vmlinux). No vmlinux.h: the module's types are
// not in vmlinux's BTF, so the program declares what it uses itself.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

char _license[] SEC("license") = "GPL";

#define NF_BPF_CT_OPTS_SZ 12	/* the size every kernel since 5.18 accepts */

// struct bpf_ct_opts as 6.1 lays it out; 6.10+ inserted ct_zone_id/ct_zone_dir
// before `reserved` (CO-RE moves it)
struct bpf_ct_opts {
	__s32 netns_id;
	__s32 error;
	__u8 l4proto;
	__u8 dir;
	__u8 reserved[2];
} __attribute__((preserve_access_index));

// a definition, not a forward declaration: libbpf checks a kfunc's prototype against the
// kernel's, and a FWD does not match the kernel's STRUCT
struct nf_conn {
	unsigned long status;
} __attribute__((preserve_access_index));

extern struct nf_conn *bpf_xdp_ct_lookup(struct xdp_md *, struct bpf_sock_tuple *, __u32,
					 struct bpf_ct_opts *, __u32) __ksym;
extern void bpf_ct_release(struct nf_conn *) __ksym;

__s32 lookup_error = 1;
__u32 lookups;
__u32 found;
__u32 reserved_offset;
__u32 opts_size;
__u64 find_get_hits;

SEC("xdp")
int ct_lookup(struct xdp_md *ctx)
{
	struct bpf_sock_tuple tup = {};
	struct bpf_ct_opts opts = {
		.netns_id = -1,		/* BPF_F_CURRENT_NETNS */
		.l4proto = 6,		/* IPPROTO_TCP */
	};
	struct nf_conn *ct;

	/* 192.0.2.1:40000 -> 192.0.2.2:9 (TEST-NET-1): no such connection */
	tup.ipv4.saddr = bpf_htonl(0xc0000201);
	tup.ipv4.daddr = bpf_htonl(0xc0000202);
	tup.ipv4.sport = bpf_htons(40000);
	tup.ipv4.dport = bpf_htons(9);
	ct = bpf_xdp_ct_lookup(ctx, &tup, sizeof(tup.ipv4), &opts, NF_BPF_CT_OPTS_SZ);
	lookups++;
	if (ct) {
		found++;
		bpf_ct_release(ct);
	}
	lookup_error = opts.error;
	reserved_offset = bpf_core_field_offset(struct bpf_ct_opts, reserved);
	opts_size = bpf_core_type_size(struct bpf_ct_opts);
	return XDP_PASS;
}

SEC("fentry/nf_conntrack_find_get")
int on_find_get(void *ctx)
{
	__sync_fetch_and_add(&find_get_hits, 1);
	return 0;
}
