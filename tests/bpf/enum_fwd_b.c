// SPDX-License-Identifier: GPL-2.0
/* The other half of enum_fwd_a.c: defines `color`, declares `lone` again. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

enum color { RED, GREEN = 5 };
enum lone;

struct holder {
	enum color *c;
	enum lone *l;
	int x;
};

struct holder holder_b;
enum color paint = GREEN;

SEC("socket")
int enum_fwd_b(void *ctx)
{
	return holder_b.x + paint;
}

char LICENSE[] SEC("license") = "GPL";
