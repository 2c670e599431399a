// A BTF raw tracepoint defined in a kernel module (issue 12, cause 5): ext4's tracepoints
// are in the ext4 module's BTF on Debian's kernels (btf_trace_ext4_*), in vmlinux where
// ext4 is built in. ext4_request_inode(struct inode *dir, int mode) fires when ext4
// allocates an inode for a new file.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char _license[] SEC("license") = "GPL";

const volatile __u32 target_pid = 0;

__u64 requests;
__u32 last_mode;

SEC("tp_btf/ext4_request_inode")
int on_request_inode(unsigned long long *ctx)
{
	if ((bpf_get_current_pid_tgid() >> 32) != target_pid)
		return 0;
	requests++;
	last_mode = (__u32)ctx[1];
	return 0;
}
