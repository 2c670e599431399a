// A typeless __ksym whose kallsyms address is 0: x86-64's per-CPU section symbols
// (test_ksyms' __per_cpu_start on 6.1). libbpf takes the address as listed.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char _license[] SEC("license") = "GPL";

extern const void ebpf_test_zero_ksym __ksym;

__u64 seen_addr = 1;

SEC("syscall")
int zero_ksym(void *ctx)
{
	seen_addr = (__u64)&ebpf_test_zero_ksym;
	return 0;
}
