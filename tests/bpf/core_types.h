/* SPDX-License-Identifier: GPL-2.0 */
/* The kernel types the CO-RE test programs (core_*.c) use, written by hand instead
 * of a vmlinux.h generated from the running kernel: the objects are compiled once,
 * the same for every kernel, and every relocation has to do real work -- these
 * layouts match no kernel (fields left out, reordered, the anonymous unions of
 * sk_buff kept) while the names and types of the fields used are the kernel's
 * (Linux 6.1 to 6.18), as CO-RE requires. Values of enumerators are as in 6.1. */
#ifndef __CORE_TYPES_H__
#define __CORE_TYPES_H__

#include <linux/types.h>
#include <linux/bpf.h>		/* enum bpf_map_type */

typedef int pid_t;
typedef unsigned int uid_t;
typedef __s64 ktime_t;
typedef struct {
	uid_t val;
} kuid_t;

#pragma clang attribute push (__attribute__((preserve_access_index)), apply_to = record)

struct list_head {
	struct list_head *next, *prev;
};

struct hlist_node {
	struct hlist_node *next, **pprev;
};

struct rb_node {
	unsigned long __rb_parent_color;
	struct rb_node *rb_right;
	struct rb_node *rb_left;
} __attribute__((aligned(sizeof(long))));

struct cred {
	int usage;
	kuid_t uid;
};

struct task_struct {
	unsigned int __state;
	unsigned int flags;
	void *stack;
	struct task_struct *real_parent;
	const struct cred *cred;
	int prio;
	unsigned int in_iowait: 1;
	unsigned int in_execve: 1;
	pid_t tgid;
	pid_t pid;
	char comm[16];
	struct hlist_node pid_links[4];
};

struct net_device;

struct sk_buff {
	union {
		struct {
			struct sk_buff *next;
			struct sk_buff *prev;
			union {
				struct net_device *dev;
				unsigned long dev_scratch;
			};
		};
		struct rb_node rbnode;
		struct list_head list;
	};
	union {
		ktime_t tstamp;
		__u64 skb_mstamp_ns;
	};
	unsigned int len;
	__u8 cloned: 1;
	__u8 nohdr: 1;
	__u8 fclone: 2;
	union {
		struct {
			__u8 pkt_type: 3;
			__u8 ignore_df: 1;
			__u8 nf_trace: 1;
			__u8 ip_summed: 2;
		};
		struct {
			__u8 pkt_type: 3;
			__u8 ignore_df: 1;
			__u8 nf_trace: 1;
			__u8 ip_summed: 2;
		} headers;
	};
};

struct nf_conn {
	unsigned long status;
};

#pragma clang attribute pop

enum perf_callchain_context {
	PERF_CONTEXT_HV = (__u64)-32,
	PERF_CONTEXT_KERNEL = (__u64)-128,
	PERF_CONTEXT_USER = (__u64)-512,
	PERF_CONTEXT_MAX = (__u64)-4095,
};

enum perf_event_state {
	PERF_EVENT_STATE_DEAD = -4,	/* -5 in 6.18 */
	PERF_EVENT_STATE_EXIT = -3,
	PERF_EVENT_STATE_ERROR = -2,
	PERF_EVENT_STATE_OFF = -1,
	PERF_EVENT_STATE_INACTIVE = 0,
	PERF_EVENT_STATE_ACTIVE = 1,
};

enum e820_type {
	E820_TYPE_RAM = 1,
	E820_TYPE_RESERVED = 2,
	E820_TYPE_SOFT_RESERVED = 0xefffffff,
};

#endif /* __CORE_TYPES_H__ */
