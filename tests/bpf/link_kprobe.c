// kprobe, kretprobe, ksyscall and kprobe_multi (tests/test_link_kprobe.py). Kernels
// without CONFIG_KPROBES load these programs but cannot attach them.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char _license[] SEC("license") = "GPL";

const volatile __u32 target_pid = 0;

__u64 kprobe_hits;
__u64 kprobe_cookie;
__u64 kretprobe_hits;
__s64 kretprobe_ret;
__u64 ksyscall_hits;
__u64 multi_hits;
__u64 multi_cookie_sum;

static __always_inline int mine(void)
{
	return (bpf_get_current_pid_tgid() >> 32) == target_pid;
}

SEC("kprobe/do_unlinkat")
int kprobe_unlinkat(struct pt_regs *ctx)
{
	if (mine()) {
		__sync_fetch_and_add(&kprobe_hits, 1);
		kprobe_cookie = bpf_get_attach_cookie(ctx);
	}
	return 0;
}

SEC("kretprobe/do_unlinkat")
int kretprobe_unlinkat(struct pt_regs *ctx)
{
	if (mine()) {
		__sync_fetch_and_add(&kretprobe_hits, 1);
		kretprobe_ret = (int)PT_REGS_RC(ctx); /* do_unlinkat returns int */
	}
	return 0;
}

SEC("ksyscall/getppid")
int ksyscall_getppid(struct pt_regs *ctx)
{
	if (mine())
		__sync_fetch_and_add(&ksyscall_hits, 1);
	return 0;
}

SEC("kprobe.multi/do_unlinka*")
int multi_unlink(struct pt_regs *ctx)
{
	if (mine()) {
		__sync_fetch_and_add(&multi_hits, 1);
		__sync_fetch_and_add(&multi_cookie_sum, bpf_get_attach_cookie(ctx));
	}
	return 0;
}
