// lsm: a BPF LSM program on the file_open hook that refuses to open one file (or, in
// audit mode, only reports it). The file is named by its device and inode numbers,
// .rodata constants set before loading; every attempt goes to user space through a
// ring buffer. An LSM program returns 0 to allow the operation or -errno to deny
// it; its last argument is what the LSM programs before it decided.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

#define EPERM 1

const volatile __u64 target_ino = 0;
const volatile __u32 target_dev = 0;    /* the kernel's dev_t: major << 20 | minor */
/* what an open of the file gets: -EPERM, or 0 to allow it and only report it. An
 * int rather than a bool with `deny ? -EPERM : 0`: from a constant the verifier knows
 * the result is 0 or a -errno, which it checks (6.12+); the negation of a bool, which
 * clang makes of that, it does not follow */
const volatile int verdict = -EPERM;

struct event {
	__u32 pid;
	int ret;                /* what the open gets from us: the verdict */
	char comm[16];
	char name[64];          /* the file's name in its directory */
};

const struct event *unused_event __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 16);
} events SEC(".maps");

SEC("lsm/file_open")
int BPF_PROG(check_open, struct file *file, int ret)
{
	struct inode *inode = file->f_inode;
	struct event *e;

	/* denied by an earlier program: deny too. (Not with its own -errno: since 6.12
	 * the verifier wants an LSM program's result proven to be 0 or a -errno, and
	 * `ret` comes from outside.) */
	if (ret != 0)
		return -EPERM;
	if (inode->i_ino != target_ino || inode->i_sb->s_dev != target_dev)
		return 0;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (e) {
		e->pid = bpf_get_current_pid_tgid() >> 32;
		e->ret = verdict;
		bpf_get_current_comm(e->comm, sizeof(e->comm));
		bpf_probe_read_kernel_str(e->name, sizeof(e->name),
					  file->f_path.dentry->d_name.name);
		bpf_ringbuf_submit(e, 0);
	}
	return verdict;
}
