// profile: a CPU profiler. A perf_event program runs on a timer on every CPU, a
// given number of times a second; each sample records which task was on the CPU and
// its kernel and user stacks (instruction pointers, innermost first), and goes to
// user space through a ring buffer.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

#define MAX_STACK_DEPTH 64

const volatile __u32 target_tgid = 0;   /* 0: every process */
const volatile __u32 self_tgid = 0;     /* the profiler, left out */
const volatile bool include_idle = false;

struct profile_sample {
	__u32 pid;
	__u32 tid;
	__u32 cpu;
	__s32 kernel_stack_bytes;  /* bytes of kernel_stack filled, or a negative errno */
	__s32 user_stack_bytes;
	char comm[16];
	__u64 kernel_stack[MAX_STACK_DEPTH];
	__u64 user_stack[MAX_STACK_DEPTH];
};

const struct profile_sample *unused_sample __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} samples SEC(".maps");

SEC("perf_event")
int profile(struct bpf_perf_event_data *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct profile_sample *s;

	if ((target_tgid && id >> 32 != target_tgid) || id >> 32 == self_tgid)
		return 0;
	if (!include_idle && !(__u32)id)        /* the idle task (pid 0) */
		return 0;
	s = bpf_ringbuf_reserve(&samples, sizeof(*s), 0);
	if (!s)
		return 0;
	s->pid = id >> 32;
	s->tid = (__u32)id;
	s->cpu = bpf_get_smp_processor_id();
	bpf_get_current_comm(s->comm, sizeof(s->comm));
	/* no kernel stack when the timer interrupted user code, and no user stack for
	 * kernel threads: the helpers then return 0 bytes */
	s->kernel_stack_bytes = bpf_get_stack(ctx, s->kernel_stack, sizeof(s->kernel_stack), 0);
	s->user_stack_bytes = bpf_get_stack(ctx, s->user_stack, sizeof(s->user_stack),
					    BPF_F_USER_STACK);
	bpf_ringbuf_submit(s, 0);
	return 0;
}
