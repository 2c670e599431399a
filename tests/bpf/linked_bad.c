// SPDX-License-Identifier: GPL-2.0
/* Objects that do not link with linked_a.c + linked_b.c, one per -D flag
 * (tests/test_linker.py checks each error). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#if !defined(DUP_STRONG) && !defined(BAD_FUNC) && !defined(BAD_VAR) && !defined(BAD_MAP) \
	&& !defined(BAD_LICENSE) && !defined(FUNC_VS_VAR)
#error "compile with one of -DDUP_STRONG -DBAD_FUNC -DBAD_VAR -DBAD_MAP -DBAD_LICENSE -DFUNC_VS_VAR"
#endif

#ifdef DUP_STRONG
int b_global(int x) { return x; }                 /* linked_b.c defines it too */
#endif
#ifdef BAD_FUNC
extern long b_global(long x, long y);             /* one parameter in linked_b.c */
SEC("xdp") int bad_xdp(struct xdp_md *ctx) { return b_global(1, 2); }
#endif
#ifdef BAD_VAR
extern long b_data;                               /* an int in linked_b.c */
SEC("xdp") int bad_xdp(struct xdp_md *ctx) { return b_data; }
#endif
#ifdef BAD_MAP
extern struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 8);                   /* 4 in linked_a.c */
	__type(key, __u32);
	__type(value, __u64);
} linked_shared SEC(".maps");
SEC("xdp") int bad_xdp(struct xdp_md *ctx)
{
	__u32 k = 0;
	return bpf_map_lookup_elem(&linked_shared, &k) ? 1 : 2;
}
#endif
#ifdef BAD_LICENSE
char LICENSE[] SEC("license") = "Dual BSD/GPL";
#endif
#ifdef FUNC_VS_VAR
int __weak b_global = 3;                          /* a function in linked_b.c */
#endif
