// Kernel and user stacks of a process's getpid calls (tests/test_symbols.py).
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char _license[] SEC("license") = "GPL";

#define NR_GETPID 39 /* x86_64 */
#define MAX_DEPTH 127

enum { CFG_TGID = 0 };
enum { ID_KERNEL = 0, ID_USER, ID_HITS, ID_COUNT };

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} target SEC(".maps");

/* the last stack ids (negative: bpf_get_stackid's error) and the number of hits */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, ID_COUNT);
	__type(key, __u32);
	__type(value, __s64);
} ids SEC(".maps");

/* one map for each kind of stack: with both in one map, the two stacks of a call could
 * hash to the same bucket and the second bpf_get_stackid would fail with -EEXIST */
struct stack_map {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 256);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, MAX_DEPTH * sizeof(__u64));
};
struct stack_map stacks SEC(".maps");        /* user stacks */
struct stack_map kernel_stacks SEC(".maps");

static __always_inline void put(__u32 slot, __s64 value)
{
	bpf_map_update_elem(&ids, &slot, &value, BPF_ANY);
}

SEC("raw_tp/sys_enter")
int stack_getpid(struct bpf_raw_tracepoint_args *ctx)
{
	__u32 zero = 0, hits = ID_HITS, *tgid = bpf_map_lookup_elem(&target, &zero);
	__s64 *n;

	if (!tgid || (bpf_get_current_pid_tgid() >> 32) != *tgid || ctx->args[1] != NR_GETPID)
		return 0;
	put(ID_KERNEL, bpf_get_stackid(ctx, &kernel_stacks, 0));
	put(ID_USER, bpf_get_stackid(ctx, &stacks, BPF_F_USER_STACK));
	n = bpf_map_lookup_elem(&ids, &hits);
	if (n)
		__sync_fetch_and_add(n, 1);
	return 0;
}
