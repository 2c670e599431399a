// An object whose BTF the kernel refuses (issue 12, cause 2): clang gives a __naked
// function with parameters a prototype with unnamed parameters, which BPF_BTF_LOAD
// rejects ("Invalid arg#1"). libbpf loads such objects without BTF; so must we.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char _license[] SEC("license") = "GPL";

__attribute__((naked, noinline)) int add_one(int x)
{
	asm volatile ("r0 = r1; r0 += 1; exit;");
}

SEC("socket")
int calls_naked(struct __sk_buff *skb)
{
	return add_one(41);
}

SEC("socket")
__attribute__((naked)) void naked_prog(void)
{
	asm volatile ("r0 = 42; exit;");
}
