// bpf_printk output read back through trace_pipe (tests/test_tracing.py).
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char _license[] SEC("license") = "GPL";

#define NR_GETPID 39 /* x86_64 */

const volatile __u32 target_pid = 0;
const volatile __u32 marker = 0;

/* The CPU the traced getpid ran on, for comparison with the trace line's. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} last_cpu SEC(".maps");

SEC("raw_tp/sys_enter")
int printk_getpid(struct bpf_raw_tracepoint_args *ctx)
{
	__u32 zero = 0, cpu;

	if ((__u32)bpf_get_current_pid_tgid() != target_pid || ctx->args[1] != NR_GETPID)
		return 0;
	cpu = bpf_get_smp_processor_id();
	bpf_map_update_elem(&last_cpu, &zero, &cpu, BPF_ANY);
	bpf_printk("ebpf-test %d %u", 42, marker);
	return 0;
}
