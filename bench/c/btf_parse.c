// libbpf side of bench/btf_parse.py: parse the kernel's BTF and find a type by name.
// Build: gcc -O2 -o btf_parse btf_parse.c -lbpf
// Prints JSON: {"parse_ms": ..., "lookup_ms": ..., "total_ms": ..., "id": ...}
#include <bpf/btf.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int main(int argc, char **argv)
{
	const char *path = argc > 1 ? argv[1] : "/sys/kernel/btf/vmlinux";
	const char *name = argc > 2 ? argv[2] : "task_struct";
	double t0 = now_ms();
	struct btf *btf = btf__parse(path, NULL);
	if (!btf) {
		perror("btf__parse");
		return 1;
	}
	double t1 = now_ms();
	int id = btf__find_by_name_kind(btf, name, BTF_KIND_STRUCT);
	double t2 = now_ms();
	if (id < 0) {
		fprintf(stderr, "%s not found\n", name);
		return 1;
	}
	printf("{\"parse_ms\": %.4f, \"lookup_ms\": %.4f, \"total_ms\": %.4f, \"id\": %d, "
	       "\"types\": %u}\n", t1 - t0, t2 - t1, t2 - t0, id, btf__type_cnt(btf));
	btf__free(btf);
	return 0;
}
