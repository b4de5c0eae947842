// SPDX-License-Identifier: (MIT OR GPL-2.0)
//
// ringo-libbpf-bench: the libbpf baseline of ringo's benchmark suite. It
// reads a pinned BPF_MAP_TYPE_RINGBUF with libbpf's ring_buffer (consume)
// or writes a pinned BPF_MAP_TYPE_USER_RINGBUF with libbpf's
// user_ring_buffer (produce), and prints one JSON line of results.
//
// Records: at least 16 bytes, a multiple of 8; u64 head (a sequence
// number) at offset 0, u64 tail = head * GOLDEN at offset len-8, both
// little-endian. The checksum is the sum of (head ^ tail) + len. A record
// whose head is END ends a streaming run and is not counted.
//
// Protocol: after opening the map the driver prints "ready", then waits
// for a "go" line on stdin; timing starts when that line has been read.
// Errors print {"error":"..."} on stdout (and more on stderr), exit 1.
#define _GNU_SOURCE
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define GOLDEN 0x9E3779B97F4A7C15ULL
#define END 0xFFFFFFFFFFFFFFFFULL
#define USAGE                                                              \
	"ringo-libbpf-bench consume --map PIN [--records N] [--poll] [--cpu K] | " \
	"produce --map PIN --records N --size S [--cpu K]"
#define POLL_MS 1000            // ring_buffer__poll timeout
#define IDLE_NS 60000000000ULL // give up after 60 s without progress

typedef unsigned long long u64;

static char version[64]; // libbpf's version, for the JSON

// json_str prints s as a JSON string.
static void json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char c = *s;
		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

// fail reports an error on stderr and as JSON on stdout, and exits 1. err
// is an errno value whose strerror ends the message, or 0 for none.
__attribute__((format(printf, 2, 3))) static void fail(int err, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (err && n >= 0 && (size_t)n < sizeof(msg))
		snprintf(msg + n, sizeof(msg) - n, ": %s", strerror(err));
	fprintf(stderr, "ringo-libbpf-bench: %s\n", msg);
	printf("{\"error\":");
	json_str(msg);
	printf("}\n");
	fflush(stdout);
	exit(1);
}

static u64 now_ns(clockid_t clk)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	return (u64)ts.tv_sec * 1000000000ULL + (u64)ts.tv_nsec;
}

// find_version fills version with libbpf's major.minor and, when the
// shared library's file name carries it (libbpf.so.1.1.2), the patch level.
static void find_version(void)
{
	unsigned maj = libbpf_major_version(), min = libbpf_minor_version();
	char prefix[32], real[PATH_MAX];
	const char *base;
	Dl_info info;

	snprintf(version, sizeof(version), "%u.%u", maj, min);
	if (!dladdr((void *)libbpf_major_version, &info) || !info.dli_fname ||
	    !realpath(info.dli_fname, real))
		return;
	base = strrchr(real, '/') ? strrchr(real, '/') + 1 : real;
	snprintf(prefix, sizeof(prefix), "libbpf.so.%u.%u.", maj, min);
	if (!strncmp(base, prefix, strlen(prefix)))
		snprintf(version, sizeof(version), "%s", base + strlen("libbpf.so."));
}

// opts are the command line's options.
static struct {
	const char *map;
	u64 records, size;
	bool poll, has_records;
	int cpu;
} opt = {.cpu = -1};

static u64 parse_u64(const char *flag, const char *s)
{
	char *end;
	u64 v;

	errno = 0;
	v = s ? strtoull(s, &end, 0) : 0;
	if (!s || !*s || *end || errno || *s == '-')
		fail(0, "%s needs a non-negative integer", flag);
	return v;
}

static void parse(int argc, char **argv, bool consume)
{
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--map") && v)
			opt.map = argv[++i];
		else if (!strcmp(a, "--records"))
			opt.records = parse_u64(a, v), opt.has_records = true, i++;
		else if (!strcmp(a, "--size") && !consume)
			opt.size = parse_u64(a, v), i++;
		else if (!strcmp(a, "--cpu") && parse_u64(a, v) < CPU_SETSIZE)
			opt.cpu = (int)parse_u64(a, v), i++;
		else if (!strcmp(a, "--poll") && consume)
			opt.poll = true;
		else
			fail(0, "bad argument %.64s (or its value is missing or out of range); usage: %s", a, USAGE);
	}
	if (!opt.map)
		fail(0, "--map is required");
	if (!opt.has_records && !(consume && opt.poll))
		fail(0, "--records is required");
	if (!consume && (opt.size < 16 || opt.size % 8 || opt.size > UINT32_MAX))
		fail(0, "--size must be a multiple of 8, at least 16");
}

// setup pins the process to opt.cpu (if given) and opens the pinned map.
static int setup(void)
{
	int fd;

	if (opt.cpu >= 0) {
		cpu_set_t set;

		CPU_ZERO(&set);
		CPU_SET(opt.cpu, &set);
		if (sched_setaffinity(0, sizeof(set), &set))
			fail(errno, "sched_setaffinity");
	}
	fd = bpf_obj_get(opt.map);
	if (fd < 0)
		fail(errno, "bpf_obj_get (is the map pinned at --map?)");
	return fd;
}

// ready tells the harness the driver is set up and waits for its "go".
static void ready(void)
{
	char line[64];

	printf("ready\n");
	fflush(stdout);
	if (!fgets(line, sizeof(line), stdin))
		fail(0, "reading \"go\" from stdin: end of input");
	if (strcmp(line, "go\n") && strcmp(line, "go"))
		fail(0, "expected \"go\" on stdin");
}

// counts is what the consumer's callback tallies.
struct counts {
	u64 records, bytes, csum, bad;
	bool ended; // the END record arrived
};

static int on_sample(void *ctx, void *data, size_t len)
{
	struct counts *c = ctx;
	u64 head, tail;

	if (len < 16) {
		c->bad++;
		return 0;
	}
	memcpy(&head, data, 8); // x86/arm64 are little-endian, as BPF writes
	if (head == END) {
		c->ended = true;
		return 0;
	}
	memcpy(&tail, (char *)data + len - 8, 8);
	if (tail != head * GOLDEN) {
		c->bad++;
		return 0;
	}
	c->records++;
	c->bytes += len;
	c->csum += (head ^ tail) + len;
	return 0;
}

static int consume(void)
{
	struct counts c = {0};
	struct ring_buffer *rb;
	u64 wall, cpu, last, polls = 0;
	const char *err = NULL;
	int n;

	rb = ring_buffer__new(setup(), on_sample, &c, NULL);
	if (!rb)
		fail(errno, "ring_buffer__new (is --map a BPF_MAP_TYPE_RINGBUF?)");
	ready();
	wall = last = now_ns(CLOCK_MONOTONIC);
	cpu = now_ns(CLOCK_THREAD_CPUTIME_ID);
	if (!opt.poll) {
		// Drain: the ring was filled before "go"; read until N records
		// or until a call finds the ring empty.
		while (c.records < opt.records && !c.ended) {
			n = ring_buffer__consume(rb);
			if (n < 0)
				fail(-n, "ring_buffer__consume");
			if (n == 0)
				break;
		}
	} else {
		// Stream: wait for records until END; a poll that returned
		// records is one wake-up.
		while (!c.ended) {
			n = ring_buffer__poll(rb, POLL_MS);
			if (n == -EINTR)
				continue;
			if (n < 0)
				fail(-n, "ring_buffer__poll");
			if (n > 0) {
				polls++;
				last = now_ns(CLOCK_MONOTONIC);
			} else if (now_ns(CLOCK_MONOTONIC) - last >= IDLE_NS) {
				err = "no record for 60 s and no END record";
				break;
			}
		}
	}
	cpu = now_ns(CLOCK_THREAD_CPUTIME_ID) - cpu;
	wall = now_ns(CLOCK_MONOTONIC) - wall;
	ring_buffer__free(rb);

	printf("{\"records\":%llu,\"bytes\":%llu,\"csum\":%llu,\"bad\":%llu,"
	       "\"wall_ns\":%llu,\"cpu_ns\":%llu,\"polls\":%llu,\"libbpf\":\"%s\"",
	       c.records, c.bytes, c.csum, c.bad, wall, cpu, polls, version);
	if (err) {
		fprintf(stderr, "ringo-libbpf-bench: %s\n", err);
		printf(",\"error\":");
		json_str(err);
	}
	printf("}\n");
	fflush(stdout);
	return err ? 1 : 0;
}

static int produce(void)
{
	struct user_ring_buffer *rb;
	u64 wall, cpu, csum = 0, full = 0, stuck = 0;

	rb = user_ring_buffer__new(setup(), NULL);
	if (!rb)
		fail(errno, "user_ring_buffer__new (is --map a BPF_MAP_TYPE_USER_RINGBUF?)");
	ready();
	wall = now_ns(CLOCK_MONOTONIC);
	cpu = now_ns(CLOCK_THREAD_CPUTIME_ID);
	for (u64 seq = 0; seq < opt.records; seq++) {
		u64 tail = seq * GOLDEN;
		char *p;

		// A NULL with ENOSPC means the ring is full: a BPF program on
		// another CPU drains it, so yield and retry. Every refused
		// reserve counts one full; 60 s without room is an error.
		for (u64 spins = 0; !(p = user_ring_buffer__reserve(rb, (__u32)opt.size)); spins++) {
			if (errno != ENOSPC)
				fail(errno, "user_ring_buffer__reserve");
			full++;
			if (spins == 0)
				stuck = now_ns(CLOCK_MONOTONIC);
			else if (spins % 1024 == 0 && now_ns(CLOCK_MONOTONIC) - stuck >= IDLE_NS)
				fail(0, "user ring full for 60 s (is a BPF program draining it?)");
			sched_yield();
		}
		memcpy(p, &seq, 8);
		memcpy(p + opt.size - 8, &tail, 8);
		user_ring_buffer__submit(rb, p);
		csum += (seq ^ tail) + opt.size;
	}
	cpu = now_ns(CLOCK_THREAD_CPUTIME_ID) - cpu;
	wall = now_ns(CLOCK_MONOTONIC) - wall;
	user_ring_buffer__free(rb);

	printf("{\"records\":%llu,\"bytes\":%llu,\"csum\":%llu,\"full\":%llu,"
	       "\"wall_ns\":%llu,\"cpu_ns\":%llu,\"libbpf\":\"%s\"}\n",
	       opt.records, opt.records * opt.size, csum, full, wall, cpu, version);
	fflush(stdout);
	return 0;
}

int main(int argc, char **argv)
{
	find_version();
	if (argc >= 2 && !strcmp(argv[1], "consume")) {
		parse(argc, argv, true);
		return consume();
	}
	if (argc >= 2 && !strcmp(argv[1], "produce")) {
		parse(argc, argv, false);
		return produce();
	}
	fail(0, "usage: %s", USAGE);
	return 1;
}
