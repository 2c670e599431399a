// C counterpart of bench/templates.py: per-endpoint template reloads the way libbpf users
// do them. Each endpoint: bpf_object__open_mem of the object, its configuration written
// into the .rodata initial value (bpf_map__initial_value), the shared maps reused
// (bpf_map__reuse_fd, descriptors inherited from the Python parent), bpf_object__load,
// then bpf_link__update_program on the endpoint's tcx link and the old object closed.
// BPF_PROG_LOAD is timed by wrapping syscall(2) (link with -Wl,--wrap=syscall against a
// static libbpf >= 1.3).
//
// Usage (inside the endpoints' network namespace):
//   templates OBJ CONFIGS N ROUNDS STATS_FD FLOWS_FD
// CONFIGS holds (ROUNDS + 1) * N configurations of the .rodata size: round 0 attaches,
// rounds 1..ROUNDS replace. Prints "ready" once attached, waits for a line on stdin,
// replaces, prints one JSON line, waits for another line, then closes everything.
#define _GNU_SOURCE
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <net/if.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

long __real_syscall(long nr, ...);

static double load_cpu_ns, load_wall_ns;

static double clock_ns(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

long __wrap_syscall(long nr, ...)
{
	va_list ap;
	long a[6];
	va_start(ap, nr);
	for (int i = 0; i < 6; i++)
		a[i] = va_arg(ap, long);
	va_end(ap);
	if (nr == __NR_bpf && a[0] == BPF_PROG_LOAD) {
		double c = clock_ns(CLOCK_THREAD_CPUTIME_ID), w = clock_ns(CLOCK_MONOTONIC);
		long ret = __real_syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
		int saved = errno;
		load_cpu_ns += clock_ns(CLOCK_THREAD_CPUTIME_ID) - c;
		load_wall_ns += clock_ns(CLOCK_MONOTONIC) - w;
		errno = saved;
		return ret;
	}
	return __real_syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
}

static char *slurp(const char *path, size_t *size)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		perror(path);
		exit(1);
	}
	fseek(f, 0, SEEK_END);
	*size = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *buf = malloc(*size);
	if (fread(buf, 1, *size, f) != *size) {
		perror(path);
		exit(1);
	}
	fclose(f);
	return buf;
}

static const char *obj_buf;
static size_t obj_size;
static int stats_fd, flows_fd;

static struct bpf_object *load(const char *config, size_t config_size, int i)
{
	char name[32];
	snprintf(name, sizeof(name), "ep%d", i);
	LIBBPF_OPTS(bpf_object_open_opts, opts, .object_name = name);
	struct bpf_object *obj = bpf_object__open_mem(obj_buf, obj_size, &opts);
	if (!obj) {
		fprintf(stderr, "open_mem: %s\n", strerror(errno));
		exit(1);
	}
	struct bpf_map *m;
	bpf_object__for_each_map(m, obj) {
		const char *n = bpf_map__name(m);
		if (strstr(n, ".rodata")) {
			size_t size;
			void *init = bpf_map__initial_value(m, &size);
			if (!init || size != config_size) {
				fprintf(stderr, ".rodata is %zu bytes, config %zu\n", size, config_size);
				exit(1);
			}
			memcpy(init, config, config_size);
		} else if (!strcmp(n, "stats")) {
			bpf_map__reuse_fd(m, stats_fd);
		} else if (!strcmp(n, "flows")) {
			bpf_map__reuse_fd(m, flows_fd);
		}
	}
	if (bpf_object__load(obj)) {
		fprintf(stderr, "load: %s\n", strerror(errno));
		exit(1);
	}
	return obj;
}

static double tv_ns(struct timeval tv)
{
	return tv.tv_sec * 1e9 + tv.tv_usec * 1e3;
}

int main(int argc, char **argv)
{
	if (argc != 7) {
		fprintf(stderr, "usage: %s OBJ CONFIGS N ROUNDS STATS_FD FLOWS_FD\n", argv[0]);
		return 2;
	}
	size_t cfg_total;
	obj_buf = slurp(argv[1], &obj_size);
	const char *cfgs = slurp(argv[2], &cfg_total);
	int n = atoi(argv[3]), rounds = atoi(argv[4]);
	stats_fd = atoi(argv[5]);
	flows_fd = atoi(argv[6]);
	size_t cfg_size = cfg_total / ((size_t)(rounds + 1) * n);
	libbpf_set_print(NULL);

	struct bpf_object **objs = calloc(n, sizeof(*objs));
	struct bpf_link **links = calloc(n, sizeof(*links));
	for (int i = 0; i < n; i++) {
		char ifname[IF_NAMESIZE];
		snprintf(ifname, sizeof(ifname), "ep%d", i);
		int ifindex = if_nametoindex(ifname);
		objs[i] = load(cfgs + (size_t)i * cfg_size, cfg_size, i);
		struct bpf_program *p = bpf_object__find_program_by_name(objs[i], "endpoint");
		links[i] = bpf_program__attach_tcx(p, ifindex, NULL);
		if (!links[i]) {
			fprintf(stderr, "attach_tcx %s: %s\n", ifname, strerror(errno));
			return 1;
		}
	}
	printf("ready\n");
	fflush(stdout);
	char line[64];
	if (!fgets(line, sizeof(line), stdin))
		return 1;

	int total = n * rounds;
	double *wall = calloc(total, sizeof(double)), *cpu = calloc(total, sizeof(double));
	double *user = calloc(total, sizeof(double)), *sys = calloc(total, sizeof(double));
	double *lcpu = calloc(total, sizeof(double)), *lwall = calloc(total, sizeof(double));
	int k = 0;
	for (int r = 1; r <= rounds; r++) {
		for (int i = 0; i < n; i++, k++) {
			struct rusage ru0, ru1;
			getrusage(RUSAGE_THREAD, &ru0);
			double w0 = clock_ns(CLOCK_MONOTONIC), c0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
			load_cpu_ns = load_wall_ns = 0;
			struct bpf_object *obj = load(cfgs + ((size_t)r * n + i) * cfg_size, cfg_size, i);
			struct bpf_program *p = bpf_object__find_program_by_name(obj, "endpoint");
			if (bpf_link__update_program(links[i], p)) {
				fprintf(stderr, "update_program: %s\n", strerror(errno));
				return 1;
			}
			bpf_object__close(objs[i]);
			objs[i] = obj;
			wall[k] = clock_ns(CLOCK_MONOTONIC) - w0;
			cpu[k] = clock_ns(CLOCK_THREAD_CPUTIME_ID) - c0;
			getrusage(RUSAGE_THREAD, &ru1);
			user[k] = tv_ns(ru1.ru_utime) - tv_ns(ru0.ru_utime);
			sys[k] = tv_ns(ru1.ru_stime) - tv_ns(ru0.ru_stime);
			lcpu[k] = load_cpu_ns;
			lwall[k] = load_wall_ns;
		}
	}
	printf("{\"replacements\": %d, \"libbpf\": \"%d.%d\", \"wall_ns\": [", total,
	       libbpf_major_version(), libbpf_minor_version());
	double *cols[] = { wall, cpu, user, sys, lcpu, lwall };
	const char *names[] = { "wall_ns", "cpu_ns", "user_ns", "sys_ns", "prog_load_cpu_ns",
				"prog_load_wall_ns" };
	for (int c = 0; c < 6; c++) {
		if (c)
			printf("], \"%s\": [", names[c]);
		for (int j = 0; j < total; j++)
			printf("%s%.0f", j ? ", " : "", cols[c][j]);
	}
	printf("]}\n");
	fflush(stdout);
	if (!fgets(line, sizeof(line), stdin))
		return 1;
	for (int i = 0; i < n; i++) {
		bpf_link__destroy(links[i]);
		bpf_object__close(objs[i]);
	}
	return 0;
}
