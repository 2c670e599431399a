// Global data at odd offsets, in .data/.rodata/.bss and custom sections.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "loader_selftest.h"

char _license[] SEC("license") = "GPL";

/* .rodata: configuration constants a template user rewrites before load */
const volatile __u32 cfg_magic = 0x1234;
const volatile __u8 cfg_pad = 7;          /* odd offsets follow */
const volatile __u64 cfg_wide = 0xdeadbeefcafeULL;
const volatile char cfg_name[12] = "default";
const volatile int cfg_enabled = 0;

/* .data and .bss */
__u8 data_byte = 3;
__u64 data_counter = 100;
__u32 bss_hits;
__u8 bss_bytes[3];
__u64 bss_after;

/* custom sections */
__u32 custom_data SEC(".data.custom") = 42;
const volatile __u16 custom_ro SEC(".rodata.custom") = 9;

struct pair { __u32 a; __u16 b; __u8 c; };
const volatile struct pair cfg_pair = { .a = 1, .b = 2, .c = 3 };

SEC("syscall")
int check_defaults(void *ctx)
{
	ASSERT(cfg_magic == 0x1234);
	ASSERT(cfg_pad == 7);
	ASSERT(cfg_wide == 0xdeadbeefcafeULL);
	ASSERT(cfg_name[0] == 'd' && cfg_name[6] == 't' && cfg_name[7] == 0);
	ASSERT(data_byte == 3);
	ASSERT(data_counter == 100);
	ASSERT(custom_data == 42);
	ASSERT(custom_ro == 9);
	ASSERT(cfg_pair.a == 1 && cfg_pair.b == 2 && cfg_pair.c == 3);
	bss_hits++;
	bss_bytes[1] = 0xaa;
	bss_after = 0x55;
	data_counter += 1;
	return 0;
}

/* Returns the magic so a test can rewrite it and read the effect; the
 * cfg_enabled branch must be pruned by the verifier when 0. */
SEC("syscall")
int read_config(void *ctx)
{
	if (cfg_enabled)
		return cfg_magic + cfg_pad;
	return cfg_magic;
}
