// Globals in a data section the kernel does not memory-map (it holds a bpf_spin_lock):
// `Variable.get/set` read and write them through map lookups and updates
// (tests/test_loader.py).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char _license[] SEC("license") = "GPL";

#define locked SEC(".data.locked") __attribute__((aligned(8)))

locked struct bpf_spin_lock guard;
locked long first = 1;
locked long second = 2;

SEC("tc")
int add_up(void *ctx)
{
	bpf_spin_lock(&guard);
	first += second;
	bpf_spin_unlock(&guard);
	return 0;
}
