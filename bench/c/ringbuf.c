// libbpf ring buffer consumer for bench/ringbuf.py.
//
//   ringbuf MAP_FD PROG_FD REPEAT ROUNDS
//
// MAP_FD (a RINGBUF map) and PROG_FD (the producer, run with
// BPF_PROG_TEST_RUN) are inherited from the Python benchmark, so every
// consumer drains records from the same map written by the same program.
// Each round fills the ring with one test run of REPEAT repetitions, then
// times ring_buffer__consume() with a callback that reads the record
// (sums its first 8 bytes: "touch") and, separately, with one that only
// counts ("count"). Each sample is [records, wall seconds, CPU seconds];
// the first round (cold pages) is a warm-up the caller drops. Prints JSON.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct ctx {
	uint64_t n;
	uint64_t sum;
};

static int cb_touch(void *c, void *data, size_t size)
{
	struct ctx *x = c;
	uint64_t v;
	memcpy(&v, data, sizeof(v));
	x->sum += v + size;
	x->n++;
	return 0;
}

static int cb_count(void *c, void *data, size_t size)
{
	(void)data;
	(void)size;
	((struct ctx *)c)->n++;
	return 0;
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
	if (argc != 5) {
		fprintf(stderr, "usage: %s MAP_FD PROG_FD REPEAT ROUNDS\n", argv[0]);
		return 2;
	}
	int map_fd = atoi(argv[1]), prog_fd = atoi(argv[2]);
	int repeat = atoi(argv[3]), rounds = atoi(argv[4]);
	struct ctx c = {0};
	ring_buffer_sample_fn fns[2] = {cb_touch, cb_count};
	const char *names[2] = {"touch", "count"};

	printf("{");
	for (int f = 0; f < 2; f++) {
		struct ring_buffer *rb = ring_buffer__new(map_fd, fns[f], &c, NULL);
		if (!rb) {
			fprintf(stderr, "ring_buffer__new failed\n");
			return 1;
		}
		ring_buffer__consume(rb); /* start empty */
		printf("%s\"%s\": [", f ? ", " : "", names[f]);
		for (int r = 0; r < rounds; r++) {
			if (fill(prog_fd, repeat)) {
				fprintf(stderr, "test run failed\n");
				return 1;
			}
			c.n = 0;
			double t0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_PROCESS_CPUTIME_ID);
			int got = ring_buffer__consume(rb);
			double c1 = now(CLOCK_PROCESS_CPUTIME_ID), t1 = now(CLOCK_MONOTONIC);
			if (got < 0) {
				fprintf(stderr, "consume failed: %d\n", got);
				return 1;
			}
			printf("%s[%llu, %.9f, %.9f]", r ? ", " : "", (unsigned long long)c.n, t1 - t0,
			       c1 - c0);
		}
		printf("]");
		ring_buffer__free(rb);
	}
	printf(", \"sum\": %llu}\n", (unsigned long long)c.sum);
	return 0;
}
