// SPDX-License-Identifier: GPL-2.0
/* Enum forward declarations across files (tests/test_linker_selftests.py): `color`
 * is only declared here and defined in enum_fwd_b.c; `lone` is defined nowhere. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

enum color;
enum lone;

struct holder {
	enum color *c;
	enum lone *l;
	int x;
};

struct holder holder_a;

SEC("socket")
int enum_fwd_a(void *ctx)
{
	return holder_a.x;
}

char LICENSE[] SEC("license") = "GPL";
