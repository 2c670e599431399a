// A BTF raw tracepoint defined in a kernel module (issue 12, cause 5): ext4's tracepoints
// are in the ext4 module's BTF on Debian's kernels (btf_trace_ext4_*), in vmlinux where
// ext4 is built in. ext4_request_inode(struct inode *dir, int mode) fires when ext4
// allocates an inode for a new file. The module's one per-CPU variable, discard_pa_seq,
// is a typed __ksym in its BTF: the ld_imm64 carries the module BTF object's fd.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char _license[] SEC("license") = "GPL";

const volatile __u32 target_pid = 0;

extern const __u64 discard_pa_seq __ksym;

__u64 requests;
__u32 last_mode;
__u32 percpu_read;
__u64 percpu_value;

SEC("tp_btf/ext4_request_inode")
int on_request_inode(unsigned long long *ctx)
{
	if ((bpf_get_current_pid_tgid() >> 32) != target_pid)
		return 0;
	requests++;
	last_mode = (__u32)ctx[1];
	return 0;
}

// (the kernel finds a __ksym variable's address in kallsyms: CONFIG_KALLSYMS_ALL)
SEC("syscall")
int read_pa_seq(void *ctx)
{
	const __u64 *seq = bpf_per_cpu_ptr(&discard_pa_seq, 0);

	if (!seq)
		return 1;
	percpu_value = *seq;
	percpu_read = 1;
	return 0;
}
