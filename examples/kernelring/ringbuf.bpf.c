//go:build ignore

// SPDX-License-Identifier: (MIT OR GPL-2.0)
//
// BPF programs for the kernelring example: every ring buffer helper of the
// kernel, driven from Go with BPF_PROG_TEST_RUN. Rebuild the committed
// objects with `go generate ./examples/kernelring` (needs clang, llvm and
// libbpf-dev).

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

// events is the ring the programs write and ringo reads.
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 16);
} events SEC(".maps");

// commands is the ring ringo writes and drain_commands reads.
struct {
	__uint(type, BPF_MAP_TYPE_USER_RINGBUF);
	__uint(max_entries, 1 << 16);
} commands SEC(".maps");

// event is one record of events: what the program saw of the ring.
struct event {
	__u64 seq;
	__u32 kind;    // 0 output, 1 reserve, 2 dynptr
	__u32 dropped; // earlier events this run could not reserve
	__u64 avail_data;
	__u64 ring_size;
	__u64 cons_pos;
	__u64 prod_pos;
};

// args is the context of produce, in and out.
struct args {
	__u32 count;      // events to write
	__u32 flags;      // BPF_RB_NO_WAKEUP, BPF_RB_FORCE_WAKEUP or 0
	__u32 written;    // out: events written
	__u32 discarded;  // out: reservations discarded (every 7th)
	__u32 dropped;    // out: reservations the full ring refused
	__u32 pad;
};

static __always_inline void fill(struct event *e, __u64 seq, __u32 kind, __u32 dropped)
{
	e->seq = seq;
	e->kind = kind;
	e->dropped = dropped;
	e->avail_data = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
	e->ring_size = bpf_ringbuf_query(&events, BPF_RB_RING_SIZE);
	e->cons_pos = bpf_ringbuf_query(&events, BPF_RB_CONS_POS);
	e->prod_pos = bpf_ringbuf_query(&events, BPF_RB_PROD_POS);
}

// state is what produce_one carries from one event to the next.
struct state {
	__u32 flags;
	__u32 written, discarded, dropped;
};

// produce_one writes event i, taking turns between bpf_ringbuf_output,
// bpf_ringbuf_reserve + submit and the dynptr helpers, and discarding
// every 7th reservation.
static long produce_one(__u32 i, void *ctx)
{
	struct state *s = ctx;
	struct event e = {};
	struct bpf_dynptr ptr;
	struct event *r;

	switch (i % 3) {
	case 0:
		fill(&e, i, 0, s->dropped);
		if (bpf_ringbuf_output(&events, &e, sizeof(e), s->flags)) {
			s->dropped++;
			return 0;
		}
		break;
	case 1:
		r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);
		if (!r) {
			s->dropped++;
			return 0;
		}
		fill(r, i, 1, s->dropped);
		if (i % 7 == 0) {
			bpf_ringbuf_discard(r, s->flags);
			s->discarded++;
			return 0;
		}
		bpf_ringbuf_submit(r, s->flags);
		break;
	default:
		if (bpf_ringbuf_reserve_dynptr(&events, sizeof(e), 0, &ptr)) {
			bpf_ringbuf_discard_dynptr(&ptr, 0);
			s->dropped++;
			return 0;
		}
		fill(&e, i, 2, s->dropped);
		bpf_dynptr_write(&ptr, 0, &e, sizeof(e), 0);
		if (i % 7 == 0) {
			bpf_ringbuf_discard_dynptr(&ptr, s->flags);
			s->discarded++;
			return 0;
		}
		bpf_ringbuf_submit_dynptr(&ptr, s->flags);
		break;
	}
	s->written++;
	return 0;
}

// produce writes args->count events with bpf_loop, so that the producer
// runs as fast as the kernel can go.
SEC("syscall")
int produce(struct args *args)
{
	struct state s = {.flags = args->flags};

	bpf_loop(args->count, produce_one, &s, 0);
	args->written = s.written;
	args->discarded = s.discarded;
	args->dropped = s.dropped;
	return 0;
}

// drain_args is the context of drain_commands.
struct drain_args {
	__s64 drained; // out: what bpf_user_ringbuf_drain returned
	__u64 sum;     // out: the sum of the first 8 bytes of every command
};

static long add_command(struct bpf_dynptr *dynptr, void *ctx)
{
	struct drain_args *a = ctx;
	__u64 v = 0;

	if (bpf_dynptr_read(&v, sizeof(v), dynptr, 0, 0) == 0)
		a->sum += v;
	return 0;
}

// drain_commands drains the user ring commands, summing the commands.
SEC("syscall")
int drain_commands(struct drain_args *args)
{
	struct drain_args a = {};

	a.drained = bpf_user_ringbuf_drain(&commands, add_command, &a, 0);
	args->drained = a.drained;
	args->sum = a.sum;
	return 0;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
