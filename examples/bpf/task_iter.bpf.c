// task_iter: a BPF iterator over every task of the system. Reading the iterator's
// file runs the program once per task (thread); it writes a fixed-size record for
// each process (each thread with show_threads) into the file with bpf_seq_write:
// ids, state, name and the task's kernel stack.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

#define MAX_STACK_DEPTH 32

const volatile bool show_threads = false;

struct task_info {
	__u32 pid;              /* the process (thread group) id, what ps calls PID */
	__u32 tid;              /* the thread id */
	__u32 ppid;
	__u32 state;            /* __state | exit_state: the letter of ps's S column */
	__s64 stack_bytes;      /* bytes of stack[] filled, or a negative errno */
	__u64 stack[MAX_STACK_DEPTH];
	char comm[16];
};

const struct task_info *unused_task_info __attribute__((unused));

SEC("iter/task")
int list_tasks(struct bpf_iter__task *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct *task = ctx->task;
	struct task_info info = {};

	if (!task)              /* called once more at the end, without a task */
		return 0;
	if (!show_threads && task->pid != task->tgid)
		return 0;
	info.pid = task->tgid;
	info.tid = task->pid;
	info.ppid = task->real_parent->tgid;
	info.state = task->__state | task->exit_state;
	__builtin_memcpy(info.comm, task->comm, sizeof(info.comm));
	info.stack_bytes = bpf_get_task_stack(task, info.stack, sizeof(info.stack), 0);
	bpf_seq_write(seq, &info, sizeof(info));
	return 0;
}
