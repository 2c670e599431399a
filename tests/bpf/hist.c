// Histograms for tests/test_hist.py: one socket filter, run with BPF_PROG_TEST_RUN,
// reads a value and a section number from the packet (a socket filter sees it from
// after the 14-byte Ethernet header) and counts the value in BCC's bucket layout:
// log2 bucket = floor(log2 v) + 1 (0 and 1 both in bucket 1), linear bucket = v.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define LOG2_SLOTS 65
#define LINEAR_SLOTS 64

struct sample {
	__u64 value;
	__u32 section;
} __attribute__((packed));

struct section_key {
	__u32 section;
	__u32 slot;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LOG2_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} log2_array SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LOG2_SLOTS);
	__type(key, __u32);
	__type(value, __u32);
} log2_percpu SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, LINEAR_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} linear_hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct section_key);
	__type(value, __u64);
} log2_sections SEC(".maps");

static __always_inline __u32 floor_log2(__u64 v)
{
	__u32 r = 0;

	if (v >> 32) { v >>= 32; r += 32; }
	if (v >> 16) { v >>= 16; r += 16; }
	if (v >> 8) { v >>= 8; r += 8; }
	if (v >> 4) { v >>= 4; r += 4; }
	if (v >> 2) { v >>= 2; r += 2; }
	if (v >> 1) r += 1;
	return r;
}

static __always_inline void add_u64(void *map, void *key)
{
	__u64 one = 1, *count = bpf_map_lookup_elem(map, key);

	if (count)
		__sync_fetch_and_add(count, 1);
	else
		bpf_map_update_elem(map, key, &one, BPF_NOEXIST);
}

SEC("socket")
int count_value(struct __sk_buff *skb)
{
	struct sample s;
	struct section_key sk;
	__u32 slot, *per_cpu;

	if (bpf_skb_load_bytes(skb, 0, &s, sizeof(s)))
		return 0;
	slot = floor_log2(s.value) + 1;
	add_u64(&log2_array, &slot);
	per_cpu = bpf_map_lookup_elem(&log2_percpu, &slot);
	if (per_cpu)
		*per_cpu += 1; /* this CPU's own copy */
	if (s.value < LINEAR_SLOTS) {
		__u32 v = s.value;

		add_u64(&linear_hash, &v);
	}
	sk.section = s.section;
	sk.slot = slot;
	add_u64(&log2_sections, &sk);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
