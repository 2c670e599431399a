// Static and global subprograms, bpf-to-bpf calls, callbacks (bpf_loop).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "loader_selftest.h"

char _license[] SEC("license") = "GPL";

static __noinline int add_static(int a, int b) { return a + b; }
__noinline int mul_global(int a, int b) { return a * b; }
static __noinline int nested(int a) { return add_static(a, 1) * 2; }

struct loop_ctx { int sum; };

static int loop_cb(__u32 i, void *data)
{
	struct loop_ctx *c = data;
	c->sum += i;
	return 0;
}

SEC("syscall")
int check_calls(void *ctx)
{
	ASSERT(add_static(2, 3) == 5);
	ASSERT(mul_global(4, 5) == 20);
	ASSERT(nested(4) == 10);
	struct loop_ctx c = { 0 };
	ASSERT(bpf_loop(5, loop_cb, &c, 0) == 5);
	ASSERT(c.sum == 0 + 1 + 2 + 3 + 4);
	return 0;
}

SEC("syscall")
int second_user(void *ctx)
{
	/* another program using the same subprogram: each gets its own copy */
	return add_static(20, 22);
}
