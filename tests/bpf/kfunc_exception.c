// An exception callback (kernel 6.7+): the program throws, the callback named by
// the main program's exception_callback decl tag turns the cookie into the return
// value. The callback is never called by the program: the loader must link it in.
#include <vmlinux.h>
#include <bpf/bpf_helpers.h>

char _license[] SEC("license") = "GPL";

#define __exception_cb(name) __attribute__((btf_decl_tag("exception_callback:" #name)))

extern void bpf_throw(__u64 cookie) __ksym;

volatile __u32 throw_cookie = 7;

__noinline int add_hundred(__u64 cookie)
{
	return cookie + 100;
}

SEC("tc")
__exception_cb(add_hundred)
int throws_to_callback(struct __sk_buff *skb)
{
	if (throw_cookie)
		bpf_throw(throw_cookie);
	return 1;
}

SEC("tc")
int throws_default(struct __sk_buff *skb)
{
	if (throw_cookie)
		bpf_throw(throw_cookie);
	return 1;
}
