// An fentry target named with its module, "<module>:<function>" (libbpf 1.3+; the
// kernel 6.12 selftests' test_module_attach names bpf_testmod's functions so): the
// function is looked up in nf_conntrack's BTF only (tests/test_kmod.py). Apart from
// kmod_conntrack.c, which is compared with the system's libbpf 1.1 (it lacks the syntax).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char _license[] SEC("license") = "GPL";

__u64 explicit_hits;

SEC("fentry/nf_conntrack:nf_conntrack_find_get")
int on_find_get_explicit(void *ctx)
{
	__sync_fetch_and_add(&explicit_hits, 1);
	return 0;
}
