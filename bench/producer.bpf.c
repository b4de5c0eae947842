//go:build ignore

// SPDX-License-Identifier: (MIT OR GPL-2.0)
//
// BPF programs of the benchmarks: one producer that every implementation
// reads from, and one drainer of a user ring. Every record is a u64 head
// (its sequence number) at offset 0 and a u64 tail (seq * GOLDEN) in its
// last 8 bytes; each side adds (head ^ tail) + len to a checksum, so a
// consumer that skipped or mangled records is caught. Rebuild the
// committed objects with `go generate ./bench` (clang, llvm, libbpf-dev).

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "ringo.h"

#define GOLDEN 0x9E3779B97F4A7C15ULL
// END is the head of the sentinel record that ends a streaming run.
#define END 0xFFFFFFFFFFFFFFFFULL
#define MAX_SIZE 4096

// rb is the ring the producers write; its size is set at load time.
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 16);
} rb SEC(".maps");

// rb_drops counts what rb refused, for ringo.LossOf (bpf/ringo.h).
RINGO_DROP_COUNTER(rb);

// perf is the perf buffer of the perfbuf scenario.
struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} perf SEC(".maps");

// urb is the user ring the drain program empties.
struct {
	__uint(type, BPF_MAP_TYPE_USER_RINGBUF);
	__uint(max_entries, 1 << 16);
} urb SEC(".maps");

// scratch holds the record that the output helpers copy from.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__uint(value_size, MAX_SIZE);
} scratch SEC(".maps");

// stats counts what the producers did, summed over runs until reset.
struct stats {
	__u64 produced; // records committed
	__u64 dropped;  // reservations or outputs refused (full)
	__u64 csum;     // checksum of the committed records
	__u64 next_seq; // sequence number of the next record
};

struct stats stats = {};

// state is what one run carries from record to record.
struct state {
	void *ctx;
	__u64 size;
	__u64 every; // 0: adaptive wake-ups; k: FORCE_WAKEUP every k-th, NO_WAKEUP else
	__u64 seq;
	__u64 produced, dropped, csum;
	void *buf;
};

static __always_inline __u64 flags_for(struct state *s)
{
	if (!s->every)
		return 0;
	return (s->seq + 1) % s->every == 0 ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
}

static __always_inline void account(struct state *s)
{
	s->produced++;
	s->csum += (s->seq ^ (s->seq * GOLDEN)) + s->size;
}

#define RESERVE_CASE(SZ)                                                  \
	case SZ: {                                                        \
		__u64 *p = bpf_ringbuf_reserve(&rb, SZ, 0);                \
		if (!p)                                                   \
			goto full;                                        \
		p[0] = s->seq;                                            \
		p[SZ / 8 - 1] = s->seq * GOLDEN;                          \
		bpf_ringbuf_submit(p, flags_for(s));                      \
		break;                                                    \
	}

// reserve_one writes record seq with bpf_ringbuf_reserve and submit.
static long reserve_one(__u32 i, void *ctx)
{
	struct state *s = ctx;

	switch (s->size) {
	RESERVE_CASE(16)
	RESERVE_CASE(32)
	RESERVE_CASE(64)
	RESERVE_CASE(128)
	RESERVE_CASE(256)
	RESERVE_CASE(512)
	RESERVE_CASE(1024)
	RESERVE_CASE(2048)
	RESERVE_CASE(4096)
	default:
		return 1;
	}
	account(s);
	s->seq++;
	return 0;
full:
	s->dropped++;
	ringo_count_drop(&rb_drops, s->size);
	s->seq++;
	return 0;
}

// fill writes head and tail of record seq into the scratch buffer.
static __always_inline int fill(struct state *s)
{
	__u64 off = s->size - 8;

	if (off > MAX_SIZE - 8)
		return -1;
	*(__u64 *)s->buf = s->seq;
	*(__u64 *)(s->buf + off) = s->seq * GOLDEN;
	return 0;
}

// output_one writes record seq with bpf_ringbuf_output.
static long output_one(__u32 i, void *ctx)
{
	struct state *s = ctx;
	__u64 size = s->size;

	if (fill(s) || size > MAX_SIZE)
		return 1;
	if (ringo_output(rb, s->buf, size, flags_for(s)))
		s->dropped++;
	else
		account(s);
	s->seq++;
	return 0;
}

// perf_one writes record seq with bpf_perf_event_output to this CPU.
static long perf_one(__u32 i, void *ctx)
{
	struct state *s = ctx;
	__u64 size = s->size;

	if (fill(s) || size > MAX_SIZE)
		return 1;
	if (bpf_perf_event_output(s->ctx, &perf, BPF_F_CURRENT_CPU, s->buf, size))
		s->dropped++;
	else
		account(s);
	s->seq++;
	return 0;
}

// Arguments of the producers, in the raw tracepoint context.
#define ARG_COUNT 0 // records to write
#define ARG_SIZE 1  // bytes per record
#define ARG_EVERY 2 // wake-up sampling, see struct state
#define ARG_HOW 3   // 0 reserve+submit, 1 ringbuf_output, 2 perf_event_output

// produce writes ARG_COUNT records with bpf_loop. Records the full ring
// refuses are counted as dropped and their sequence numbers skipped.
SEC("raw_tp")
int produce(struct bpf_raw_tracepoint_args *ctx)
{
	__u32 zero = 0;
	struct state s = {
		.ctx = ctx,
		.size = ctx->args[ARG_SIZE],
		.every = ctx->args[ARG_EVERY],
		.seq = stats.next_seq,
	};
	__u64 how = ctx->args[ARG_HOW];
	long n = -1;

	s.buf = bpf_map_lookup_elem(&scratch, &zero);
	if (!s.buf)
		return -1;
	switch (how) {
	case 0:
		n = bpf_loop(ctx->args[ARG_COUNT], reserve_one, &s, 0);
		break;
	case 1:
		n = bpf_loop(ctx->args[ARG_COUNT], output_one, &s, 0);
		break;
	case 2:
		n = bpf_loop(ctx->args[ARG_COUNT], perf_one, &s, 0);
		break;
	}
	stats.produced += s.produced;
	stats.dropped += s.dropped;
	stats.csum += s.csum;
	stats.next_seq = s.seq;
	return n < 0 ? n : 0;
}

// sentinel writes the END record that tells a streaming consumer to stop,
// forcing a wake-up; it returns 1 when the full ring refused it.
SEC("raw_tp")
int sentinel(struct bpf_raw_tracepoint_args *ctx)
{
	__u64 rec[2] = {END, 0};

	if (ctx->args[ARG_HOW] == 2)
		return bpf_perf_event_output(ctx, &perf, BPF_F_CURRENT_CPU, rec, sizeof(rec)) ? 1 : 0;
	return bpf_ringbuf_output(&rb, rec, sizeof(rec), BPF_RB_FORCE_WAKEUP) ? 1 : 0;
}

// drained counts what drain took from the user ring, summed over runs.
struct drained {
	__u64 records;
	__u64 csum;
	__u64 bad; // records whose size the drain could not read
};

struct drained drained = {};

extern __u32 bpf_dynptr_size(const struct bpf_dynptr *p) __ksym;

static long drain_one(struct bpf_dynptr *d, void *ctx)
{
	struct drained *a = ctx;
	__u64 size = bpf_dynptr_size(d);
	__u64 head = 0, tail = 0;

	if (size < 16 || bpf_dynptr_read(&head, 8, d, 0, 0) ||
	    bpf_dynptr_read(&tail, 8, d, size - 8, 0)) {
		a->bad++;
		return 0;
	}
	a->records++;
	a->csum += (head ^ tail) + size;
	return 0;
}

// drain empties the user ring urb, checksumming its records.
SEC("syscall")
int drain(void *ctx)
{
	struct drained a = {};

	bpf_user_ringbuf_drain(&urb, drain_one, &a, 0);
	drained.records += a.records;
	drained.csum += a.csum;
	drained.bad += a.bad;
	return 0;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
