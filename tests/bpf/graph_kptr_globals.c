// graph_kptr.c's global-data program alone (count_calls), for the tests that need no
// graph types (tests/test_graph_kptr.py, on every kernel): a plain object, built
// without vmlinux.h, so the kernel matrix's guests find it prewarmed like every source.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char _license[] SEC("license") = "GPL";

long calls;

SEC("tc")
int count_calls(void *ctx)
{
	calls++;
	return 0;
}
