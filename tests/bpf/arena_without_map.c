// An __arena global in an object without an arena map: there is no memory to put it
// in, so parsing the object fails naming the section (tests/test_arena.py).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char _license[] SEC("license") = "GPL";

int __attribute__((address_space(1))) orphan = 1;

SEC("syscall")
int use_orphan(void *ctx)
{
	return orphan;
}
