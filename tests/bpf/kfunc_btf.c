// Objects that declare kfuncs keep their whole BTF in the kernel (issue 12, cause 1):
// extern FUNCs in .ksyms, a global subprogram whose context argument is tagged
// arg:ctx, a local type id, and bpf_spin_locks in a map value and in a .bss section.
#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

char _license[] SEC("license") = "GPL";

#define __arg_ctx __attribute__((btf_decl_tag("arg:ctx")))

extern void bpf_rcu_read_lock(void) __ksym;
extern void bpf_rcu_read_unlock(void) __ksym;
extern struct task_struct *bpf_task_from_pid(s32) __ksym;
extern void bpf_task_release(struct task_struct *) __ksym;

struct ebpf_test_local {
	int a;
	long b;
};

struct locked_value {
	struct bpf_spin_lock lock;
	__u64 count;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct locked_value);
} locked SEC(".maps");

// hidden, as the kernel selftests' private() globals: static to the loader, so the
// section is not mmap()able (the kernel refuses to map a bpf_spin_lock)
__hidden struct bpf_spin_lock bss_lock SEC(".bss.locked");
__hidden __u64 bss_count SEC(".bss.locked");

__u32 local_type_id;
// a global (not hidden) lock: the section is mmap()able as libbpf makes it, but the
// kernel refuses to map it; its variables are read through lookups
struct bpf_spin_lock shared_lock SEC(".bss.shared");
__u64 shared_count SEC(".bss.shared");

__s32 target_pid = 1;
__s32 found_pid = -1;
long stack_bytes;

static long stack[32];

// Without the arg:ctx tag the verifier sees `void *` and refuses to pass it to
// bpf_get_stack as a context.
__noinline int stack_of(void *ctx __arg_ctx)
{
	return bpf_get_stack(ctx, stack, sizeof(stack), 0);
}

SEC("raw_tp")
int rcu_and_ctx(void *ctx)
{
	bpf_rcu_read_lock();
	stack_bytes = stack_of(ctx);
	bpf_rcu_read_unlock();
	local_type_id = bpf_core_type_id_local(struct ebpf_test_local);
	return 0;
}

SEC("syscall")
int task_of_pid(void *ctx)
{
	struct task_struct *t = bpf_task_from_pid(target_pid);

	if (!t)
		return -1;
	found_pid = t->pid;
	bpf_task_release(t);
	return 0;
}

SEC("tc")
int spin_locks(struct __sk_buff *skb)
{
	__u32 key = 0;
	struct locked_value *v = bpf_map_lookup_elem(&locked, &key);

	if (!v)
		return 0;
	bpf_spin_lock(&v->lock);
	v->count++;
	bpf_spin_unlock(&v->lock);
	bpf_spin_lock(&bss_lock);
	bss_count += 2;
	bpf_spin_unlock(&bss_lock);
	bpf_spin_lock(&shared_lock);
	shared_count += 5;
	bpf_spin_unlock(&shared_lock);
	return 0;
}
