// libbpf perf buffer consumer for bench/perfbuf.py.
//
//   perfbuf MAP_FD PROG_FD REPEAT ROUNDS PAGES WATERMARK
//
// MAP_FD (a PERF_EVENT_ARRAY) and PROG_FD (the producer, run with
// BPF_PROG_TEST_RUN) are inherited from the Python benchmark. libbpf opens its
// own BPF_OUTPUT events (PAGES data pages per CPU, waking readers after
// WATERMARK bytes like the Python reader in the benchmark: a wakeup per sample
// makes the producer, not the consumer, the bottleneck) and stores them in the
// map. Each round fills the rings with one test run of REPEAT repetitions (the
// caller pins the process to one CPU), then times perf_buffer__consume() with
// a callback that reads the sample ("touch") and, separately, one that only
// counts ("count"); the callbacks see each record as libbpf's own
// perf_buffer__new() sample callback would (wrapped records are copied by
// libbpf). Each sample is [records, wall seconds, CPU seconds]; the first
// round is a warm-up the caller drops. Prints one JSON object.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/perf_event.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct ctx {
	uint64_t n;
	uint64_t lost;
	uint64_t sum;
};

struct sample {
	struct perf_event_header header;
	uint32_t size;
	char data[];
};

struct lost {
	struct perf_event_header header;
	uint64_t id;
	uint64_t lost;
};

static enum bpf_perf_event_ret cb_touch(void *c, int cpu, struct perf_event_header *ev)
{
	struct ctx *x = c;
	(void)cpu;
	if (ev->type == PERF_RECORD_SAMPLE) {
		struct sample *s = (struct sample *)ev;
		uint64_t v;
		memcpy(&v, s->data, sizeof(v));
		x->sum += v + s->size;
		x->n++;
	} else if (ev->type == PERF_RECORD_LOST) {
		x->lost += ((struct lost *)ev)->lost;
	}
	return LIBBPF_PERF_EVENT_CONT;
}

static enum bpf_perf_event_ret cb_count(void *c, int cpu, struct perf_event_header *ev)
{
	struct ctx *x = c;
	(void)cpu;
	if (ev->type == PERF_RECORD_SAMPLE)
		x->n++;
	else if (ev->type == PERF_RECORD_LOST)
		x->lost += ((struct lost *)ev)->lost;
	return LIBBPF_PERF_EVENT_CONT;
}

static double now(clockid_t clk)
{
	struct timespec ts;
	clock_gettime(clk, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int fill(int prog_fd, int repeat)
{
	char pkt[64] = {0};
	LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = pkt, .data_size_in = sizeof(pkt),
		    .repeat = repeat);
	return bpf_prog_test_run_opts(prog_fd, &opts);
}

int main(int argc, char **argv)
{
	if (argc != 7) {
		fprintf(stderr, "usage: %s MAP_FD PROG_FD REPEAT ROUNDS PAGES WATERMARK\n", argv[0]);
		return 2;
	}
	int map_fd = atoi(argv[1]), prog_fd = atoi(argv[2]);
	int repeat = atoi(argv[3]), rounds = atoi(argv[4]), pages = atoi(argv[5]);
	struct ctx c = {0};
	perf_buffer_event_fn fns[2] = {cb_touch, cb_count};
	const char *names[2] = {"touch", "count"};
	struct perf_event_attr attr = {
		.type = PERF_TYPE_SOFTWARE,
		.size = sizeof(attr),
		.config = PERF_COUNT_SW_BPF_OUTPUT,
		.sample_period = 1,
		.sample_type = PERF_SAMPLE_RAW,
		.watermark = 1,
		.wakeup_watermark = (uint32_t)atoi(argv[6]),
	};

	printf("{");
	for (int f = 0; f < 2; f++) {
		struct perf_buffer *pb = perf_buffer__new_raw(map_fd, pages, &attr, fns[f], &c, NULL);
		if (!pb) {
			fprintf(stderr, "perf_buffer__new_raw failed\n");
			return 1;
		}
		perf_buffer__consume(pb);
		printf("%s\"%s\": [", f ? ", " : "", names[f]);
		for (int r = 0; r < rounds; r++) {
			if (fill(prog_fd, repeat)) {
				fprintf(stderr, "test run failed\n");
				return 1;
			}
			c.n = 0;
			double t0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_PROCESS_CPUTIME_ID);
			int err = perf_buffer__consume(pb);
			double c1 = now(CLOCK_PROCESS_CPUTIME_ID), t1 = now(CLOCK_MONOTONIC);
			if (err < 0) {
				fprintf(stderr, "consume failed: %d\n", err);
				return 1;
			}
			printf("%s[%llu, %.9f, %.9f]", r ? ", " : "", (unsigned long long)c.n, t1 - t0,
			       c1 - c0);
		}
		printf("]");
		perf_buffer__free(pb);
	}
	printf(", \"lost\": %llu, \"sum\": %llu}\n", (unsigned long long)c.lost,
	       (unsigned long long)c.sum);
	return 0;
}
