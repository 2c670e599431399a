// kprobe: a kprobe and a kretprobe on do_unlinkat(), the kernel function behind
// unlink(2) and unlinkat(2). The entry probe sees the function's arguments (the file
// name is a `struct filename *`, read with CO-RE), the return probe its return value;
// both print a line into the trace buffer with bpf_printk.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

const volatile __u32 target_tgid = 0;   /* 0: every process */

SEC("kprobe/do_unlinkat")
int BPF_KPROBE(unlink_entry, int dfd, struct filename *name)
{
	__u32 pid = bpf_get_current_pid_tgid() >> 32;

	if (target_tgid && pid != target_tgid)
		return 0;
	/* name->name is a kernel pointer: BPF_CORE_READ follows it with a relocated
	 * offset, and %s in bpf_printk copies the string safely */
	bpf_printk("KPROBE ENTRY pid = %d, filename = %s", pid, BPF_CORE_READ(name, name));
	return 0;
}

SEC("kretprobe/do_unlinkat")
int BPF_KRETPROBE(unlink_exit, int ret)
{
	__u32 pid = bpf_get_current_pid_tgid() >> 32;

	if (target_tgid && pid != target_tgid)
		return 0;
	bpf_printk("KPROBE EXIT: pid = %d, ret = %d", pid, ret);
	return 0;
}
