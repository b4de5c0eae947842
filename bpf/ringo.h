/* SPDX-License-Identifier: MIT */
/*
 * ringo.h: helpers for BPF programs that write into rings ringo reads.
 *
 * Include it after <bpf/bpf_helpers.h> (libbpf's):
 *
 *     #include <linux/bpf.h>
 *     #include <bpf/bpf_helpers.h>
 *     #include "ringo.h"        // -I path/to/ringo/bpf
 *
 * Ring sets. A ring buffer is a map, so arrays and hashes of maps can hold
 * rings, and a program picks its ring at run time. Declare the outer map
 * with RINGO_RING_SET or RINGO_RING_SET_BY_KEY, and let the Go side create
 * the rings (ringo.CreateRingSet) and hand the outer map to the program
 * (cilium/ebpf's CollectionOptions.MapReplacements, or a pin). Then:
 *
 *     void *ring = ringo_ring_for_cpu(&events);   // one ring per CPU
 *     void *ring = ringo_ring_for_shard(&events, flow_hash, 4);
 *     void *ring = ringo_ring_for_key(&tenants, tenant_id);
 *     if (ring)
 *         bpf_ringbuf_output(ring, &ev, sizeof(ev), 0);
 *
 * Records are in order within one ring, never across rings.
 */
#ifndef RINGO_H
#define RINGO_H

/*
 * RINGO_RING_SET declares an array of maps of `shards` ring buffers (use
 * the number of possible CPUs for a ring per CPU). ring_size is the
 * template's size; ringo may put rings of other sizes in it.
 */
#define RINGO_RING_SET(name, shards, ring_size)                      \
	struct {                                                     \
		__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);            \
		__uint(max_entries, shards);                         \
		__type(key, __u32);                                  \
		__array(values, struct {                             \
			__uint(type, BPF_MAP_TYPE_RINGBUF);          \
			__uint(max_entries, ring_size);              \
		});                                                  \
	} name SEC(".maps")

/* RINGO_RING_SET_BY_KEY declares a hash of maps: rings by a 32-bit key,
 * added and removed at run time. */
#define RINGO_RING_SET_BY_KEY(name, max_keys, ring_size)             \
	struct {                                                     \
		__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);             \
		__uint(max_entries, max_keys);                       \
		__type(key, __u32);                                  \
		__array(values, struct {                             \
			__uint(type, BPF_MAP_TYPE_RINGBUF);          \
			__uint(max_entries, ring_size);              \
		});                                                  \
	} name SEC(".maps")

/* ringo_ring_for_cpu returns the ring of the CPU the program runs on, or
 * NULL if the set has none there. */
static __always_inline void *ringo_ring_for_cpu(void *set)
{
	__u32 cpu = bpf_get_smp_processor_id();
	return bpf_map_lookup_elem(set, &cpu);
}

/* ringo_ring_for_shard returns ring hash % shards of an array set, so
 * that records of one hash (a flow, a process) keep their order. */
static __always_inline void *ringo_ring_for_shard(void *set, __u64 hash, __u32 shards)
{
	__u32 i = shards ? hash % shards : 0;
	return bpf_map_lookup_elem(set, &i);
}

/* ringo_ring_for_key returns the ring of key in a set by key, or NULL. */
static __always_inline void *ringo_ring_for_key(void *set, __u32 key)
{
	return bpf_map_lookup_elem(set, &key);
}

/*
 * Drop accounting. The kernel counts nothing when a ring is full:
 * bpf_ringbuf_reserve returns NULL, bpf_ringbuf_output an error, and the
 * event is gone. Declare a counter next to the ring and write through the
 * wrappers, and ringo counts every refused record and its bytes, per CPU
 * (no atomics), where its reader finds them (ringo.LossOf, ringo show/stat):
 *
 *     struct { __uint(type, BPF_MAP_TYPE_RINGBUF); ... } events SEC(".maps");
 *     RINGO_DROP_COUNTER(events);                    // map "events_drops"
 *
 *     ringo_output(events, &ev, sizeof(ev), 0);       // returns like bpf_ringbuf_output
 *     struct event *e = ringo_reserve(events, sizeof(*e), 0);  // NULL when full
 *
 * ringo finds the counter of a ring by its name, RING_drops (cut to the
 * kernel's 15 characters), among the maps of the programs that use the
 * ring; or tell it: KernelRing.SetDropCounter. For rings picked at run
 * time (ring sets), count with ringo_count_drop(&counter, size).
 */
struct ringo_drops {
	__u64 drops; /* records refused because the ring was full */
	__u64 bytes; /* their payload bytes */
};

#define RINGO_DROP_COUNTER(ring)                                     \
	struct {                                                     \
		__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);             \
		__uint(max_entries, 1);                              \
		__type(key, __u32);                                  \
		__type(value, struct ringo_drops);                   \
	} ring##_drops SEC(".maps")

/* ringo_count_drop counts one refused record of size bytes in counter. */
static __always_inline void ringo_count_drop(void *counter, __u64 size)
{
	__u32 zero = 0;
	struct ringo_drops *d = bpf_map_lookup_elem(counter, &zero);

	if (d) {
		d->drops++; /* this CPU's slot: nothing else writes it now */
		d->bytes += size;
	}
}

/* ringo_output is bpf_ringbuf_output(&ring, ...) that counts a refusal in
 * ring's RINGO_DROP_COUNTER. */
#define ringo_output(ring, data, size, flags)                        \
	({                                                           \
		long __ringo_err = bpf_ringbuf_output(&ring, data, size, flags); \
		if (__ringo_err)                                     \
			ringo_count_drop(&ring##_drops, size);       \
		__ringo_err;                                         \
	})

/* ringo_reserve is bpf_ringbuf_reserve(&ring, ...) that counts a refusal
 * in ring's RINGO_DROP_COUNTER. */
#define ringo_reserve(ring, size, flags)                             \
	({                                                           \
		void *__ringo_rec = bpf_ringbuf_reserve(&ring, size, flags); \
		if (!__ringo_rec)                                    \
			ringo_count_drop(&ring##_drops, size);       \
		__ringo_rec;                                         \
	})

#endif /* RINGO_H */
