// A 16 MiB .bss (issue 12, cause 7): data sections as large as the kernel allows
// (an array map value of up to INT_MAX bytes), as libbpf loads them.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char _license[] SEC("license") = "GPL";

#define BIG (16 << 20)

char big[BIG - 16];
__u64 first_seen;
__u64 last_written;

SEC("syscall")
int touch_big(void *ctx)
{
	first_seen = big[0];
	big[BIG - 17] = 0x5a;
	last_written = big[BIG - 17];
	return 0;
}
