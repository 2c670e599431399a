// A 16 MiB array of integers in .bss: decoding, `ebpf inspect` and `ebpf gen` must stay
// fast on it (the fuzzing campaign found ebpf gen taking a minute on such a variable).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char _license[] SEC("license") = "GPL";

__u32 counts[4 << 20];

SEC("syscall")
int count(void *ctx)
{
	counts[7] += 1;
	return 0;
}
