// SPDX-License-Identifier: MIT
/*
 * libbpf_core_relos: what libbpf does with every CO-RE relocation of an object.
 *
 * Opens OBJECT (against the target BTF file TARGET when given, through
 * bpf_object_open_opts.btf_custom_path; else the running kernel's BTF), turns on
 * every program, skips map creation, and calls bpf_object__load with libbpf's
 * print callback at debug level. CO-RE relocation is the first thing libbpf does
 * to the instructions, so its per-relocation messages are complete even though
 * the load then fails: there are no maps, and programs get a type no kernel knows,
 * so the first one is refused before anything is verified. Programs attached
 * through BTF (tracing, LSM, extension, struct_ops) keep their type: libbpf needs
 * it to look up their attach target, and at most one of them is verified.
 * Prints one JSON object:
 *
 *   {"object": PATH, "target": PATH|null, "libbpf": "1.1",
 *    "open": {"ok": B, "errno": N}, "load_errno": N,
 *    "programs": [{"name": S, "section": S}],
 *    "log": [every line libbpf printed, in order]}
 *
 * tests/test_core_differential.py reads the "prog 'NAME': relo #N: ..." lines of
 * the log (patched instructions, poisoned ones, failures) and compares them with
 * ebpf.btf.core on the same object and target.
 *
 *   gcc -O2 -o libbpf_core_relos tools/c/libbpf_core_relos.c -lbpf
 *   ./libbpf_core_relos OBJECT [TARGET_BTF]
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bpf/libbpf.h>

/* Not a program type any kernel knows: BPF_PROG_LOAD fails at once with EINVAL. */
#define NO_SUCH_PROG_TYPE 0x7fff

static char *log_text;
static size_t log_len, log_cap;

static int collect(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	(void)level;
	va_list again;
	va_copy(again, ap);
	int n = vsnprintf(NULL, 0, fmt, again);
	va_end(again);
	if (n <= 0)
		return 0;
	if (log_len + (size_t)n + 1 > log_cap) {
		size_t cap = log_cap ? log_cap : 1 << 16;
		while (log_len + (size_t)n + 1 > cap)
			cap *= 2;
		char *grown = realloc(log_text, cap);
		if (!grown)
			return 0;
		log_text = grown;
		log_cap = cap;
	}
	vsnprintf(log_text + log_len, log_cap - log_len, fmt, ap);
	log_len += (size_t)n;
	return 0;
}

static void json_str(const char *s, size_t len)
{
	putchar('"');
	for (size_t i = 0; i < len && s[i]; i++) {
		unsigned char c = (unsigned char)s[i];
		switch (c) {
		case '"': fputs("\\\"", stdout); break;
		case '\\': fputs("\\\\", stdout); break;
		case '\t': fputs("\\t", stdout); break;
		default:
			if (c < 0x20 || c >= 0x7f)
				printf("\\u%04x", c);
			else
				putchar(c);
		}
	}
	putchar('"');
}

static void print_log_lines(void)
{
	size_t start = 0;
	int first = 1;
	for (size_t i = 0; i <= log_len; i++) {
		if (i < log_len && log_text[i] != '\n')
			continue;
		if (i > start) {
			if (!first)
				fputs(",\n  ", stdout);
			json_str(log_text + start, i - start);
			first = 0;
		}
		start = i + 1;
	}
}

static void disable_map_creation(struct bpf_object *obj)
{
	struct bpf_map *m;
	bpf_object__for_each_map(m, obj)
		bpf_map__set_autocreate(m, false);
}

static int attached_through_btf(enum bpf_prog_type type)
{
	return type == BPF_PROG_TYPE_TRACING || type == BPF_PROG_TYPE_LSM ||
	       type == BPF_PROG_TYPE_EXT || type == BPF_PROG_TYPE_STRUCT_OPS;
}

static void print_programs_and_arm_them(struct bpf_object *obj)
{
	struct bpf_program *p;
	int first = 1;
	bpf_object__for_each_program(p, obj) {
		bpf_program__set_autoload(p, true);
		if (!attached_through_btf(bpf_program__type(p)))
			bpf_program__set_type(p, NO_SUCH_PROG_TYPE);
		printf("%s{\"name\": ", first ? "" : ", ");
		json_str(bpf_program__name(p), strlen(bpf_program__name(p)));
		printf(", \"section\": ");
		json_str(bpf_program__section_name(p), strlen(bpf_program__section_name(p)));
		putchar('}');
		first = 0;
	}
}

int main(int argc, char **argv)
{
	if (argc != 2 && argc != 3) {
		fprintf(stderr, "usage: %s OBJECT [TARGET_BTF]\n", argv[0]);
		return 2;
	}
	const char *path = argv[1];
	const char *target = argc == 3 ? argv[2] : NULL;
	libbpf_set_print(collect);

	LIBBPF_OPTS(bpf_object_open_opts, opts, .btf_custom_path = target);
	struct bpf_object *obj = bpf_object__open_file(path, &opts);
	long open_err = libbpf_get_error(obj);

	printf("{\"object\": ");
	json_str(path, strlen(path));
	printf(", \"target\": ");
	if (target)
		json_str(target, strlen(target));
	else
		fputs("null", stdout);
	printf(", \"libbpf\": \"%u.%u\", \"open\": {\"ok\": %s, \"errno\": %ld},\n",
	       libbpf_major_version(), libbpf_minor_version(), open_err ? "false" : "true",
	       -open_err);
	printf(" \"programs\": [");
	int load_err = 0;
	if (!open_err) {
		disable_map_creation(obj);
		print_programs_and_arm_them(obj);
		load_err = bpf_object__load(obj);
	}
	printf("],\n \"load_errno\": %d,\n \"log\": [", -load_err);
	print_log_lines();
	printf("]}\n");
	if (!open_err)
		bpf_object__close(obj);
	free(log_text);
	return 0;
}
