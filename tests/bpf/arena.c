// Arena (issue 12, cause 4): an arena map at a fixed user address (__ulong map_extra),
// __arena globals (clang's .addr_space.1 section) with an initial value, a page from
// the bpf_arena_alloc_pages kfunc written through an arena pointer, and that pointer
// stored in the arena for user space to follow. clang emits the address-space casts
// (cast_kern/cast_user) itself; the verifier handles them.
#include <vmlinux.h>
#include <bpf/bpf_helpers.h>

char _license[] SEC("license") = "GPL";

#define __arena __attribute__((address_space(1)))

#ifndef __ulong
#define __ulong(name, val) enum { ___bpf_concat(__unique_value, __COUNTER__) = val } name
#endif

struct {
	__uint(type, BPF_MAP_TYPE_ARENA);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 4); /* pages */
	__ulong(map_extra, 0x1ull << 44); /* user address of the arena */
} arena SEC(".maps");

void __arena *bpf_arena_alloc_pages(void *map, void __arena *addr, __u32 page_cnt,
				    int node_id, __u64 flags) __ksym __weak;

struct pair {
	__u64 a;
	__u64 b;
};

__u64 __arena counter = 7;          // offset 0 of the arena: libbpf's layout
struct pair __arena *__arena head;  // an arena pointer stored in the arena
__u64 __arena written;              // zero at load
__u64 __arena *__arena self_ref;    // &counter, as the program sees it
__u64 user_ptr;                     // .bss: the page's user address

SEC("syscall")
int arena_write(void *ctx)
{
	struct pair __arena *p;

	p = bpf_arena_alloc_pages(&arena, NULL, 1, -1, 0);
	if (!p)
		return -1;
	p->a = 0x1122334455667788ull;
	p->b = counter;  // 7 at load, or what user space wrote there
	counter += 35;
	written = 5;
	head = p;
	self_ref = &counter;
	user_ptr = (__u64)p;
	return (int)(p->b & 0xffff);
}
