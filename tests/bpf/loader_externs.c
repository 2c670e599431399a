// .kconfig externs (incl. weak missing ones) and __ksym externs (typed, typeless, kfunc).
#include <linux/bpf.h>
#include <linux/version.h>
#include <bpf/bpf_helpers.h>
#include "loader_selftest.h"

char _license[] SEC("license") = "GPL";


extern unsigned int LINUX_KERNEL_VERSION __kconfig;
extern int CONFIG_HZ __kconfig;
extern _Bool CONFIG_BPF __kconfig;
extern enum libbpf_tristate CONFIG_BPF_SYSCALL __kconfig;
extern _Bool CONFIG_EBPF_TEST_DOES_NOT_EXIST __kconfig __weak;
extern int CONFIG_EBPF_TEST_MISSING_INT __kconfig __weak;

extern const void entry_SYSCALL_64 __ksym;            /* typeless */
extern const void ebpf_test_no_such_symbol __ksym __weak;

__u32 seen_version;
__u64 sym_addr;

SEC("syscall")
int check_kconfig(void *ctx)
{
	ASSERT(LINUX_KERNEL_VERSION >= KERNEL_VERSION(5, 0, 0));
	ASSERT(CONFIG_HZ >= 100 && CONFIG_HZ <= 1000);
	ASSERT(CONFIG_BPF);
	ASSERT(CONFIG_BPF_SYSCALL == TRI_YES);
	ASSERT(!CONFIG_EBPF_TEST_DOES_NOT_EXIST);
	ASSERT(CONFIG_EBPF_TEST_MISSING_INT == 0);
	seen_version = LINUX_KERNEL_VERSION;
	return 0;
}

SEC("syscall")
int check_ksyms(void *ctx)
{
	sym_addr = (__u64)&entry_SYSCALL_64;
	ASSERT(&ebpf_test_no_such_symbol == 0);
	return 0;
}
