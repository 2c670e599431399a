// libbpf open + load + close of one object, timed in-process.
// Prints JSON: {"first_ms": ..., "mean_ms": ..., "min_ms": ...}
#include <bpf/libbpf.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static int quiet(enum libbpf_print_level l, const char *f, va_list a) { return 0; }

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s OBJ N\n", argv[0]);
		return 2;
	}
	int n = atoi(argv[2]);
	double first = 0, sum = 0, min = 1e9;
	libbpf_set_print(quiet);
	for (int i = 0; i < n; i++) {
		double t0 = now_ms();
		struct bpf_object *obj = bpf_object__open_file(argv[1], NULL);
		if (!obj || libbpf_get_error(obj)) {
			fprintf(stderr, "open failed\n");
			return 1;
		}
		if (bpf_object__load(obj)) {
			fprintf(stderr, "load failed\n");
			return 1;
		}
		bpf_object__close(obj);
		double dt = now_ms() - t0;
		if (i == 0)
			first = dt;
		sum += dt;
		if (dt < min)
			min = dt;
	}
	printf("{\"first_ms\": %.3f, \"mean_ms\": %.3f, \"min_ms\": %.3f}\n", first, sum / n, min);
	return 0;
}
