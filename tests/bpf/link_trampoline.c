// BPF trampoline programs: fentry/fexit/fmod_ret on kernel functions, LSM,
// freplace and fentry/fexit on another BPF program (tests/test_link_trampoline.py).
// Kernels without trampolines refuse to load them.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

char _license[] SEC("license") = "GPL";

#define EPERM 1

const volatile __u32 target_pid = 0;
const volatile __u64 target_ino = 0;

__u64 fentry_hits;
__u64 fexit_hits;
__s64 fexit_ret;
__u64 fmod_hits;
__u64 lsm_denied;
__u64 prog_entry_hits;
__u64 prog_exit_hits;
__s64 prog_exit_ret;

static __always_inline int mine(void)
{
	return (bpf_get_current_pid_tgid() >> 32) == target_pid;
}

SEC("fentry/do_unlinkat")
int BPF_PROG(fentry_unlinkat, int dfd, struct filename *name)
{
	if (mine())
		__sync_fetch_and_add(&fentry_hits, 1);
	return 0;
}

SEC("fexit/do_unlinkat")
int BPF_PROG(fexit_unlinkat, int dfd, struct filename *name, int ret)
{
	if (mine()) {
		__sync_fetch_and_add(&fexit_hits, 1);
		fexit_ret = ret;
	}
	return 0;
}

/* security_* functions may have their return value modified: fail opens of the
 * target file by this process with EPERM */
SEC("fmod_ret/security_file_open")
int BPF_PROG(fmod_file_open, struct file *file, int ret)
{
	if (!mine() || BPF_CORE_READ(file, f_inode, i_ino) != target_ino)
		return 0;
	__sync_fetch_and_add(&fmod_hits, 1);
	return -EPERM;
}

SEC("lsm/file_open")
int BPF_PROG(deny_open, struct file *file, int ret)
{
	if (ret)
		return ret;
	if (BPF_CORE_READ(file, f_inode, i_ino) == target_ino) {
		__sync_fetch_and_add(&lsm_denied, 1);
		return -EPERM;
	}
	return 0;
}

SEC("freplace/get_value")
int new_get_value(int x)
{
	return x + 100;
}

SEC("fentry/tc_target")
int BPF_PROG(prog_entry, struct __sk_buff *skb)
{
	__sync_fetch_and_add(&prog_entry_hits, 1);
	return 0;
}

SEC("fexit/tc_target")
int BPF_PROG(prog_exit, struct __sk_buff *skb, int ret)
{
	__sync_fetch_and_add(&prog_exit_hits, 1);
	prog_exit_ret = ret;
	return 0;
}
