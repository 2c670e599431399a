// fentry: the same function as the kprobe example, do_unlinkat(), through BPF
// trampolines. An fentry program is called like a function with the traced
// function's typed arguments (BTF tells the verifier what they are, so `name->name`
// is a plain pointer dereference); an fexit program gets the arguments too, and the
// return value after them.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

const volatile __u32 target_tgid = 0;   /* 0: every process */

SEC("fentry/do_unlinkat")
int BPF_PROG(unlink_entry, int dfd, struct filename *name)
{
	__u32 pid = bpf_get_current_pid_tgid() >> 32;

	if (target_tgid && pid != target_tgid)
		return 0;
	bpf_printk("fentry: pid = %d, filename = %s", pid, name->name);
	return 0;
}

SEC("fexit/do_unlinkat")
int BPF_PROG(unlink_exit, int dfd, struct filename *name, int ret)
{
	__u32 pid = bpf_get_current_pid_tgid() >> 32;

	if (target_tgid && pid != target_tgid)
		return 0;
	bpf_printk("fexit: pid = %d, filename = %s, ret = %d", pid, name->name, ret);
	return 0;
}
