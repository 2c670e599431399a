// minimal: the smallest useful BPF program. A tracepoint on the write(2) system
// call prints a line into the kernel's trace buffer with bpf_printk, for one process
// and one file descriptor only (both are .rodata constants set from user space
// before loading, so the verifier sees them as constants).
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

const volatile int target_pid = 0;
const volatile int target_fd = -1;

SEC("tracepoint/syscalls/sys_enter_write")
int handle_write(struct trace_event_raw_sys_enter *ctx)
{
	int pid = bpf_get_current_pid_tgid() >> 32;

	if (pid != target_pid || ctx->args[0] != target_fd)
		return 0;
	bpf_printk("BPF triggered from PID %d.", pid);
	return 0;
}
