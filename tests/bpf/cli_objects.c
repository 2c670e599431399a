// Objects for the `ebpf` command's tests against bpftool: a BTF-typed hash map, a
// per-CPU-free array, an XDP program, a tc program (for tcx and clsact), a cgroup_skb
// program and a tracepoint program, with line info.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char _license[] SEC("license") = "GPL";

struct key { __u32 a; __u16 b; };
struct val { __u64 count; char name[8]; int arr[2]; };

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, struct key);
	__type(value, struct val);
} typed SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

static __noinline int bump(__u32 slot)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &slot);

	if (v)
		__sync_fetch_and_add(v, 1);
	return 0;
}

SEC("xdp")
int xdp_count(struct xdp_md *ctx)
{
	bump(0);
	return XDP_PASS;
}

SEC("tc")
int tc_count(struct __sk_buff *skb)
{
	struct key k = { .a = skb->len, .b = 1 };
	struct val *v = bpf_map_lookup_elem(&typed, &k);

	if (v)
		v->count++;
	bump(1);
	return 0;
}

SEC("cgroup_skb/ingress")
int cg_count(struct __sk_buff *skb)
{
	bump(2);
	return 1;
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int tp_count(void *ctx)
{
	bump(3);
	return 0;
}
