// Programs in the section names libbpf 1.5/1.6 added (issue 12, cause 7): the name
// alone gives the program type and expected attach type the kernel checks.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <stdbool.h>

char _license[] SEC("license") = "GPL";

extern bool bpf_session_is_return(void) __ksym;

__u32 target_tgid;
__u64 entries;
__u64 returns;

SEC("sk_skb/verdict")
int skb_verdict(struct __sk_buff *skb)
{
	return SK_PASS;
}

// one program on both entry and return of getpid() in libc (a uprobe session)
SEC("uprobe.session/libc.so.6:getpid")
int getpid_session(void *ctx)
{
	if (bpf_get_current_pid_tgid() >> 32 != target_tgid)
		return 1;	/* nonzero: no return probe for this call */
	if (bpf_session_is_return())
		__sync_fetch_and_add(&returns, 1);
	else
		__sync_fetch_and_add(&entries, 1);
	return 0;
}
