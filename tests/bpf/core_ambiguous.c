// SPDX-License-Identifier: GPL-2.0
/* The kernel has both `struct nf_conn` and `struct nf_conn___init` (a flavor of
 * it): a type id relocation of struct nf_conn has two compatible candidates
 * with different ids, which libbpf refuses as ambiguous. */
#include "core_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

SEC("raw_tp/sys_enter")
int core_ambiguous(void *ctx)
{
	return bpf_core_type_id_kernel(struct nf_conn);
}
