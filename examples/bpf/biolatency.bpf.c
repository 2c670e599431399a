// biolatency: block device I/O latency as a log2 histogram. A request is stamped
// when it is issued to the device driver (or, with queued_time, when it is inserted
// into the I/O scheduler's queue) and measured when it completes; the latency is
// counted in the bucket of its log2 in a hash map keyed by (disk, bucket).
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

#define MAX_SLOT 63

const volatile bool queued_time = false;   /* from block_rq_insert, not _issue */
const volatile bool per_disk = false;
const volatile bool milliseconds = false;
const volatile __u32 target_dev = 0;       /* major << 20 | minor; 0: every disk */

struct hist_key {
	__u32 dev;              /* major << 20 | minor with per_disk, else 0 */
	__u32 slot;             /* bucket: log2(latency) + 1 */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, struct request *);
	__type(value, __u64);
} start SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct hist_key);
	__type(value, __u64);
} hist SEC(".maps");

static __always_inline __u32 request_dev(struct request *rq)
{
	struct gendisk *disk = BPF_CORE_READ(rq, q, disk);

	if (!disk)
		return 0;
	return BPF_CORE_READ(disk, major) << 20 | BPF_CORE_READ(disk, first_minor);
}

static __always_inline void stamp(struct request *rq)
{
	__u64 ts;

	if (target_dev && request_dev(rq) != target_dev)
		return;
	ts = bpf_ktime_get_ns();
	bpf_map_update_elem(&start, &rq, &ts, BPF_ANY);
}

static __always_inline __u32 log2_slot(__u64 v)
{
	__u32 slot = 1;

	for (int i = 0; i < MAX_SLOT && v > 1; i++) {
		v >>= 1;
		slot++;
	}
	return slot;
}

SEC("tp_btf/block_rq_insert")
int handle_insert(__u64 *ctx)
{
	if (queued_time)
		stamp((struct request *)ctx[0]);
	return 0;
}

SEC("tp_btf/block_rq_issue")
int handle_issue(__u64 *ctx)
{
	struct request *rq = (struct request *)ctx[0];

	/* with queued_time, a request inserted before we started has no stamp: skip it
	 * rather than count it from here */
	if (!queued_time)
		stamp(rq);
	return 0;
}

SEC("tp_btf/block_rq_complete")
int handle_complete(__u64 *ctx)
{
	struct request *rq = (struct request *)ctx[0];
	struct hist_key key = {};
	__u64 *tsp, delta, zero = 0, *count;

	tsp = bpf_map_lookup_elem(&start, &rq);
	if (!tsp)
		return 0;
	delta = (bpf_ktime_get_ns() - *tsp) / (milliseconds ? 1000000 : 1000);
	bpf_map_delete_elem(&start, &rq);
	if (per_disk)
		key.dev = request_dev(rq);
	key.slot = log2_slot(delta);
	count = bpf_map_lookup_elem(&hist, &key);
	if (!count) {           /* first in this bucket (or another CPU's at once) */
		bpf_map_update_elem(&hist, &key, &zero, BPF_NOEXIST);
		count = bpf_map_lookup_elem(&hist, &key);
	}
	if (count)
		__sync_fetch_and_add(count, 1);
	return 0;
}
