//go:build ignore

// Ring sets from the BPF side: each run of the program writes one event
// into the ring of the CPU it runs on, and one into the ring of the key
// the packet carries, picked with ringo.h's helpers.

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "ringo.h"

char LICENSE[] SEC("license") = "GPL";

struct event {
	__u32 cpu;
	__u32 key;
	__u64 seq;
};

RINGO_RING_SET(per_cpu, 1, 4096);        /* replaced by a set made in Go */
RINGO_RING_SET_BY_KEY(by_key, 64, 4096); /* likewise */

__u64 seq;

/* A socket filter, run with BPF_PROG_TEST_RUN: the first four bytes it
 * sees (after the Ethernet header) are the key. */
SEC("socket")
int emit(struct __sk_buff *skb)
{
	struct event ev = {};
	if (bpf_skb_load_bytes(skb, 0, &ev.key, sizeof(ev.key)) < 0)
		return 0;
	ev.cpu = bpf_get_smp_processor_id();
	ev.seq = __sync_fetch_and_add(&seq, 1);

	void *ring = ringo_ring_for_cpu(&per_cpu);
	if (ring)
		bpf_ringbuf_output(ring, &ev, sizeof(ev), 0);
	ring = ringo_ring_for_key(&by_key, ev.key);
	if (ring)
		bpf_ringbuf_output(ring, &ev, sizeof(ev), 0);
	return 0;
}
