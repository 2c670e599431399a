// ksyscall: who sends signals to whom. Kprobes on the kill(2) and tgkill(2) system
// calls, placed by SEC("ksyscall/<name>") on the architecture's syscall function
// (__x64_sys_kill on x86_64); BPF_KSYSCALL reads the system call's own arguments
// whether or not the kernel wraps syscalls in a function taking a pt_regs.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>     /* BPF_KSYSCALL reads the registers with CO-RE */

char LICENSE[] SEC("license") = "GPL";

const volatile __u32 target_tgid = 0;   /* 0: every sender */

static __always_inline bool skip(__u32 sender, int sig)
{
	/* signal 0 sends nothing: it only checks that the target exists */
	return sig == 0 || (target_tgid && sender != target_tgid);
}

SEC("ksyscall/kill")
int BPF_KSYSCALL(kill_entry, pid_t pid, int sig)
{
	__u32 sender = bpf_get_current_pid_tgid() >> 32;
	char comm[16];

	if (skip(sender, sig))
		return 0;
	bpf_get_current_comm(comm, sizeof(comm));
	bpf_printk("KILL syscall called by PID %d (%s) for PID %d with signal %d.",
		   sender, comm, pid, sig);
	return 0;
}

SEC("ksyscall/tgkill")
int BPF_KSYSCALL(tgkill_entry, pid_t tgid, pid_t tid, int sig)
{
	__u32 sender = bpf_get_current_pid_tgid() >> 32;
	char comm[16];

	if (skip(sender, sig))
		return 0;
	bpf_get_current_comm(comm, sizeof(comm));
	bpf_printk("tgkill syscall called by PID %d (%s) for thread id %d with pid %d "
		   "and signal %d.", sender, comm, tid, tgid, sig);
	return 0;
}
