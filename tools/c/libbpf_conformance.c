// SPDX-License-Identifier: MIT
/*
 * libbpf_conformance: the reference side of tools/conformance.py.
 *
 * Built against the libbpf of the kernel tree the conformance corpus comes from
 * (tools/lib/bpf of linux-source-6.12: libbpf 1.5), statically. For one BPF object
 * it loads every program on its own, whatever its autoload default (SEC("?...")
 * included): the object is opened again for each program, every other program gets
 * autoload=false, the object is loaded (maps, BTF, the one program) and closed.
 * It prints one JSON object:
 *
 *   {"object": PATH, "libbpf": "1.5", "open": {"ok": B, "errno": N, "error": S},
 *    "programs": [{"name", "section", "type", "attach_type", "autoload", "ok",
 *                  "errno", "log_tail", "user_ns", "sys_ns"}]}
 *
 * "autoload" is the program's default (false for SEC("?...")); "log_tail" holds the
 * last lines of what libbpf printed at warning/info level while loading (its own
 * messages and the verifier log it prints on failure); "user_ns"/"sys_ns" are the
 * process CPU time (getrusage) of opening, loading and closing the object for that
 * program. Debug messages are not formatted at all, so that they cost nothing.
 * Maps pinned by name go to a private bpffs directory, removed at exit.
 *
 * With --link OUTPUT INPUT..., it links objects into one with libbpf's static linker
 * instead (as the selftests do with `bpftool gen object`, but with this libbpf).
 *
 *   cc -O2 -I<libbpf headers> -o libbpf_conformance libbpf_conformance.c libbpf.a -lelf -lz
 *   ./libbpf_conformance OBJECT
 *   ./libbpf_conformance --link OUTPUT INPUT...
 */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <bpf/libbpf.h>

#define LOG_CAP (256 * 1024)
#define TAIL_LINES 16

static char log_text[LOG_CAP];
static size_t log_used;

static int on_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	if (level == LIBBPF_DEBUG || log_used >= LOG_CAP - 1)
		return 0;
	int n = vsnprintf(log_text + log_used, LOG_CAP - log_used, fmt, ap);
	if (n > 0) {
		size_t room = LOG_CAP - 1 - log_used;
		log_used += (size_t)n < room ? (size_t)n : room;
	}
	return 0;
}

/* The last TAIL_LINES lines of the collected log (trailing newlines dropped). */
static const char *tail_of_log(void)
{
	size_t end = log_used;
	while (end > 0 && log_text[end - 1] == '\n')
		end--;
	log_text[end] = '\0';
	size_t start = end;
	for (int seen = 0; start > 0; start--) {
		if (log_text[start - 1] == '\n' && ++seen == TAIL_LINES)
			break;
	}
	return log_text + start;
}

static void put_json_string(const char *s)
{
	putchar('"');
	for (; s && *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c == '\n')
			fputs("\\n", stdout);
		else if (c < 0x20 || c >= 0x7f)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static void put_lower(const char *s)
{
	char buf[96];
	size_t i = 0;
	for (; s && s[i] && i + 1 < sizeof(buf); i++)
		buf[i] = (s[i] >= 'A' && s[i] <= 'Z') ? (char)(s[i] - 'A' + 'a') : s[i];
	buf[i] = '\0';
	put_json_string(buf);
}

static char pin_root[256] = "/sys/fs/bpf/libbpf-conformance-XXXXXX";
static bool pin_root_made;

static void drop_pin_root(void)
{
	DIR *d = opendir(pin_root);
	if (d) {
		struct dirent *e;
		while ((e = readdir(d)) != NULL) {
			if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
				unlinkat(dirfd(d), e->d_name, 0);
		}
		closedir(d);
	}
	rmdir(pin_root);
}

static struct bpf_object *open_object(const char *path, int *err)
{
	LIBBPF_OPTS(bpf_object_open_opts, opts, .pin_root_path = pin_root_made ? pin_root : NULL);
	struct bpf_object *obj = bpf_object__open_file(path, &opts);
	long e = libbpf_get_error(obj);
	*err = e < 0 ? (int)-e : (int)e;
	return e ? NULL : obj;
}

static long long cpu_ns(const struct timeval *tv)
{
	return (long long)tv->tv_sec * 1000000000LL + (long long)tv->tv_usec * 1000LL;
}

struct prog_name {
	char *name;
	bool autoload;
};

static int link_objects(const char *out, char **inputs, int count)
{
	struct bpf_linker *linker = bpf_linker__new(out, NULL);
	if (!linker) {
		fprintf(stderr, "%.*s", (int)log_used, log_text);
		return 1;
	}
	int err = 0;
	for (int i = 0; i < count && !err; i++)
		err = bpf_linker__add_file(linker, inputs[i], NULL);
	if (!err)
		err = bpf_linker__finalize(linker);
	bpf_linker__free(linker);
	if (err)
		fprintf(stderr, "%.*s", (int)log_used, log_text);
	return err ? 1 : 0;
}

int main(int argc, char **argv)
{
	libbpf_set_print(on_print);
	if (argc >= 4 && strcmp(argv[1], "--link") == 0)
		return link_objects(argv[2], argv + 3, argc - 3);
	if (argc != 2) {
		fprintf(stderr, "usage: %s OBJECT | --link OUTPUT INPUT...\n", argv[0]);
		return 2;
	}
	const char *path = argv[1];
	/* tools/conformance.py names the directory (and removes it, also after killing
	 * this process); run by hand, a temporary one is made and removed at exit */
	const char *given = getenv("LIBBPF_CONFORMANCE_PIN_DIR");
	if (given && *given && strlen(given) < sizeof(pin_root)) {
		strcpy(pin_root, given);
		pin_root_made = true;
	} else if (mkdtemp(pin_root)) {
		pin_root_made = true;
		atexit(drop_pin_root);
	}

	int err;
	log_used = 0;
	struct bpf_object *obj = open_object(path, &err);
	printf("{\"object\": ");
	put_json_string(path);
	printf(", \"libbpf\": \"%u.%u\", \"open\": {\"ok\": %s, \"errno\": %d, \"error\": ",
	       libbpf_major_version(), libbpf_minor_version(), obj ? "true" : "false", err);
	put_json_string(obj ? "" : tail_of_log());
	printf("}, \"programs\": [");
	if (!obj) {
		printf("]}\n");
		return 1;
	}

	size_t count = 0, cap = 8;
	struct prog_name *progs = calloc(cap, sizeof(*progs));
	struct bpf_program *p;
	bpf_object__for_each_program(p, obj) {
		if (count == cap) {
			cap *= 2;
			progs = realloc(progs, cap * sizeof(*progs));
		}
		progs[count].name = strdup(bpf_program__name(p));
		progs[count].autoload = bpf_program__autoload(p);
		count++;
	}
	bpf_object__close(obj);

	int failures = 0;
	for (size_t i = 0; i < count; i++) {
		struct rusage before, after;
		struct bpf_program *target = NULL;

		log_used = 0;
		getrusage(RUSAGE_SELF, &before);
		obj = open_object(path, &err);
		if (obj) {
			bpf_object__for_each_program(p, obj) {
				bool mine = strcmp(bpf_program__name(p), progs[i].name) == 0;
				bpf_program__set_autoload(p, mine);
				if (mine)
					target = p;
			}
			if (target) {
				err = bpf_object__load(obj);
				err = err < 0 ? -err : err;
			} else {
				err = ENOENT;
			}
		}
		/* what is printed is read before closing; closing is part of the cost */
		printf("%s\n  {\"name\": ", i ? "," : "");
		put_json_string(progs[i].name);
		printf(", \"section\": ");
		put_json_string(target ? bpf_program__section_name(target) : "");
		printf(", \"type\": ");
		put_lower(target ? libbpf_bpf_prog_type_str(bpf_program__type(target)) : "");
		printf(", \"attach_type\": ");
		put_lower(target ? libbpf_bpf_attach_type_str(
				       bpf_program__expected_attach_type(target)) : "");
		bpf_object__close(obj);
		getrusage(RUSAGE_SELF, &after);
		if (err)
			failures++;
		printf(", \"autoload\": %s, \"ok\": %s, \"errno\": %d, \"log_tail\": ",
		       progs[i].autoload ? "true" : "false", err ? "false" : "true", err);
		put_json_string(err ? tail_of_log() : "");
		printf(", \"user_ns\": %lld, \"sys_ns\": %lld}",
		       cpu_ns(&after.ru_utime) - cpu_ns(&before.ru_utime),
		       cpu_ns(&after.ru_stime) - cpu_ns(&before.ru_stime));
		fflush(stdout);
		free(progs[i].name);
	}
	free(progs);
	printf("\n]}\n");
	return failures ? 1 : 0;
}
