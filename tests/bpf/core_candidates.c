// Two programs relocating fields of the same local types, each of which has two
// candidates in the test's target BTF (`struct foo<n>___x`, without the fields,
// and `struct foo<n>`, with them): relocated from two threads at once, each
// program still finds its fields in `struct foo<n>`.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

char _license[] SEC("license") = "GPL";

#define TYPE(n) struct foo##n { int a; int b; } __attribute__((preserve_access_index))
TYPE(0); TYPE(1); TYPE(2); TYPE(3);

#define FIELD(n, f) (bpf_core_field_offset(struct foo##n, f) \
                     + bpf_core_field_exists(struct foo##n, f) * 1000)

/* 4 * (8 + 1000) = 4032 */
SEC("syscall")
int prog_a(void *ctx)
{
	return FIELD(0, a) + FIELD(1, a) + FIELD(2, a) + FIELD(3, a);
}

/* 4 * (4 + 1000) = 4016 */
SEC("syscall")
int prog_b(void *ctx)
{
	return FIELD(0, b) + FIELD(1, b) + FIELD(2, b) + FIELD(3, b);
}
