// Map and extern constructs of the kernel's selftests that libbpf accepts:
// ring buffers whose size is not a power-of-2 multiple of the page size
// (libbpf rounds it up, test_ringbuf_multi's max_entries 1000), also as the
// inner map of a map-in-map, and a __weak virtual kconfig extern libbpf does
// not know (test_core_extern's LINUX_UNKNOWN_VIRTUAL_EXTERN), which is zero.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char _license[] SEC("license") = "GPL";

struct ringbuf_map {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1000);
} ring_odd SEC(".maps"), ring_inner SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, int);
	__array(values, struct ringbuf_map);
} ring_arr SEC(".maps") = {
	.values = { [0] = &ring_inner },
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 3 * 4096);
} ring_3pages SEC(".maps");

extern int LINUX_UNKNOWN_VIRTUAL_EXTERN __kconfig __weak;
extern unsigned int LINUX_KERNEL_VERSION __kconfig;

SEC("syscall")
int use_maps(void *ctx)
{
	void *inner;
	int zero = 0;
	__u64 *rec;

	if (LINUX_UNKNOWN_VIRTUAL_EXTERN != 0)
		return __LINE__;
	if (LINUX_KERNEL_VERSION == 0)
		return __LINE__;
	rec = bpf_ringbuf_reserve(&ring_odd, sizeof(*rec), 0);
	if (!rec)
		return __LINE__;
	*rec = 42;
	bpf_ringbuf_submit(rec, 0);
	rec = bpf_ringbuf_reserve(&ring_3pages, sizeof(*rec), 0);
	if (rec)
		bpf_ringbuf_discard(rec, 0);
	inner = bpf_map_lookup_elem(&ring_arr, &zero);
	if (!inner)
		return __LINE__;
	if (bpf_ringbuf_output(inner, &zero, sizeof(zero), 0))
		return __LINE__;
	return 0;
}
