// SPDX-License-Identifier: MIT
/*
 * libbpf_each: the libbpf side of `ebpf load --each --json`.
 *
 * For a BPF object, load every program on its own (all other programs get
 * bpf_program__set_autoload(false); the maps are created each time) and print
 * one JSON object:
 *
 *   {"object": PATH, "libbpf": "1.1", "open": {"ok": B, "errno": N, "error": S},
 *    "programs": [{"name", "section", "type", "attach_type", "ok", "errno",
 *                  "log_tail"}]}
 *
 * Programs that are not autoloaded by default (SEC("?...")) are loaded too, as
 * `ebpf load --each` does. Exit status 0 when everything loaded.
 *
 * With --prepare, sizes a tool's user space would set before loading are filled
 * in first (tools/realworld.py does the same on the `ebpf` side): maps other than
 * perf event arrays and local storage with max_entries 0 get PREPARE_MAX_ENTRIES,
 * stack trace maps
 * with value_size 0 get PREPARE_STACK_DEPTH 8-byte slots.
 *
 *   gcc -O2 -o libbpf_each tools/c/libbpf_each.c -lbpf
 *   ./libbpf_each [--prepare] OBJECT
 */
#include <errno.h>
#include <stdarg.h>
#include <dirent.h>
#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include <bpf/libbpf.h>

#define LOG_CAP (64 * 1024)
#define TAIL_LINES 12
#define PREPARE_MAX_ENTRIES 64
#define PREPARE_STACK_DEPTH 127

static char logbuf[LOG_CAP];
static size_t loglen;

static int collect(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	(void)level;
	if (loglen >= LOG_CAP - 1)
		return 0;
	int n = vsnprintf(logbuf + loglen, LOG_CAP - loglen, fmt, ap);
	if (n > 0)
		loglen += (size_t)n < LOG_CAP - loglen ? (size_t)n : LOG_CAP - 1 - loglen;
	return 0;
}

static void json_str(const char *s)
{
	putchar('"');
	for (; s && *s; s++) {
		unsigned char c = (unsigned char)*s;
		switch (c) {
		case '"': fputs("\\\"", stdout); break;
		case '\\': fputs("\\\\", stdout); break;
		case '\n': fputs("\\n", stdout); break;
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

static const char *log_tail(void)
{
	size_t end = loglen;
	int lines = 0;
	while (end > 0 && logbuf[end - 1] == '\n')
		end--;
	logbuf[end] = '\0';
	size_t i = end;
	while (i > 0) {
		if (logbuf[i - 1] == '\n' && ++lines == TAIL_LINES)
			break;
		i--;
	}
	return logbuf + i;
}

static const char *lower(const char *s, char *buf, size_t cap)
{
	size_t i = 0;
	if (!s)
		return NULL;
	for (; s[i] && i + 1 < cap; i++)
		buf[i] = (s[i] >= 'A' && s[i] <= 'Z') ? s[i] - 'A' + 'a' : s[i];
	buf[i] = '\0';
	return buf;
}

static int prepare;

/* sk/inode/task/cgroup local storage maps must have max_entries 0 */
static int local_storage(enum bpf_map_type t)
{
	return t == 24 || t == 28 || t == 29 || t == 32;
}

/* Maps pinned by name go to a private bpffs directory, removed at exit, instead of
 * libbpf's default /sys/fs/bpf (nothing may stay pinned after a comparison run). */
static char pin_dir[] = "/sys/fs/bpf/libbpf-each-XXXXXX";
static int have_pin_dir;

static void remove_pin_dir(void)
{
	if (!have_pin_dir)
		return;
	DIR *d = opendir(pin_dir);
	if (d) {
		struct dirent *e;
		while ((e = readdir(d)) != NULL)
			if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
				unlinkat(dirfd(d), e->d_name, 0);
		closedir(d);
	}
	rmdir(pin_dir);
}

static struct bpf_object *open_obj(const char *path, int *err)
{
	loglen = 0;
	if (!have_pin_dir && mkdtemp(pin_dir)) {
		have_pin_dir = 1;
		atexit(remove_pin_dir);
	}
	LIBBPF_OPTS(bpf_object_open_opts, opts, .pin_root_path = have_pin_dir ? pin_dir : NULL);
	struct bpf_object *obj = bpf_object__open_file(path, &opts);
	long e = libbpf_get_error(obj);
	*err = e ? (int)-e : 0;
	if (e)
		return NULL;
	if (prepare) {
		struct bpf_map *m;
		bpf_object__for_each_map(m, obj) {
			enum bpf_map_type t = bpf_map__type(m);
			if (bpf_map__max_entries(m) == 0 && t != BPF_MAP_TYPE_PERF_EVENT_ARRAY &&
			    !local_storage(t))
				bpf_map__set_max_entries(m, PREPARE_MAX_ENTRIES);
			if (t == BPF_MAP_TYPE_STACK_TRACE && bpf_map__value_size(m) == 0)
				bpf_map__set_value_size(m, PREPARE_STACK_DEPTH * 8);
		}
	}
	return obj;
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "--prepare") == 0) {
		prepare = 1;
		argv++;
		argc--;
	}
	if (argc != 2) {
		fprintf(stderr, "usage: %s [--prepare] OBJECT\n", argv[0]);
		return 2;
	}
	const char *path = argv[1];
	libbpf_set_strict_mode(LIBBPF_STRICT_ALL);
	libbpf_set_print(collect);

	int err;
	struct bpf_object *obj = open_obj(path, &err);
	printf("{\"object\": ");
	json_str(path);
	printf(", \"libbpf\": \"%u.%u\", \"open\": {\"ok\": %s, \"errno\": %d, \"error\": ",
	       libbpf_major_version(), libbpf_minor_version(), obj ? "true" : "false", err);
	json_str(obj ? "" : log_tail());
	printf("}, \"programs\": [");
	if (!obj) {
		printf("]}\n");
		return 1;
	}

	/* Names of the programs to try, from a first open. */
	size_t n = 0, cap = 16;
	char **names = calloc(cap, sizeof(*names));
	struct bpf_program *p;
	bpf_object__for_each_program(p, obj) {
		if (n == cap) {
			cap *= 2;
			names = realloc(names, cap * sizeof(*names));
		}
		names[n++] = strdup(bpf_program__name(p));
	}
	bpf_object__close(obj);

	int all_ok = 1;
	for (size_t i = 0; i < n; i++) {
		char tbuf[64], abuf[64];
		obj = open_obj(path, &err);
		struct bpf_program *target = NULL;
		if (obj) {
			bpf_object__for_each_program(p, obj) {
				if (strcmp(bpf_program__name(p), names[i]) == 0) {
					target = p;
					bpf_program__set_autoload(p, true);
				} else
					bpf_program__set_autoload(p, false);
			}
		}
		if (target) {
			loglen = 0;
			err = bpf_object__load(obj);
			err = err < 0 ? -err : err;
		} else if (!err) {
			err = ENOENT;
		}
		if (err)
			all_ok = 0;
		printf("%s\n  {\"name\": ", i ? "," : "");
		json_str(names[i]);
		printf(", \"section\": ");
		json_str(target ? bpf_program__section_name(target) : "");
		printf(", \"type\": ");
		json_str(target ? lower(libbpf_bpf_prog_type_str(bpf_program__type(target)),
					tbuf, sizeof(tbuf)) : "");
		printf(", \"attach_type\": ");
		json_str(target ? lower(libbpf_bpf_attach_type_str(
					bpf_program__expected_attach_type(target)),
					abuf, sizeof(abuf)) : "");
		printf(", \"ok\": %s, \"errno\": %d, \"log_tail\": ", err ? "false" : "true", err);
		json_str(err ? log_tail() : "");
		printf("}");
		bpf_object__close(obj);
		free(names[i]);
	}
	free(names);
	printf("\n]}\n");
	return all_ok ? 0 : 1;
}
