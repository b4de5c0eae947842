package ringo

import (
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/ringo-bpf/ringo/internal/bpfmap"
	"github.com/ringo-bpf/ringo/internal/sys"
)

// Loss is what a ring failed to deliver, as far as anything counted it.
type Loss struct {
	// Dropped records are those producers gave up on: for ringo's rings,
	// an Output or Reserve refused (ErrFull, or ErrBusy), and an
	// OutputWait or ReserveWait whose context ended; never a waiting
	// call's retries. For kernel rings, a NULL bpf_ringbuf_reserve or a
	// failed bpf_ringbuf_output counted by bpf/ringo.h. DroppedBytes are
	// their payload bytes.
	Dropped, DroppedBytes uint64
	// Overwritten records were committed, then overwritten by producers
	// of a ring in overwrite mode before a reader got to them;
	// OverwrittenBytes the ring positions they took.
	Overwritten, OverwrittenBytes uint64
	// Abandoned records of a shared ring were reserved by processes that
	// died before committing them.
	Abandoned uint64
	// Counted is false for a kernel ring whose drops nothing counts: no
	// RINGO_DROP_COUNTER was found for it (see KernelRing.SetDropCounter).
	// Dropped is then 0 for want of a count, not for want of drops.
	Counted bool
}

// Loss returns what the ring lost so far, from its own counters: records
// producers gave up on (see Dropped), overwritten before a reader got to
// them (overwrite mode) and abandoned by producer processes that died. It
// fails only if a shared ring's memory faults (faults.go).
func (r *Ring) Loss() (l Loss, err error) {
	if r.guarded {
		defer r.catchFault(guardFaults(), &err)
	}
	m := r.mem
	l = Loss{Dropped: m.dropped.Load(), DroppedBytes: m.droppedBytes.Load(), Abandoned: m.abandoned.Load(), Counted: true}
	l.Overwritten, l.OverwrittenBytes = r.overwritten()
	return l, nil
}

// Loss returns what the ring lost so far: the records its producers could
// not write, from the per-CPU counter map bpf/ringo.h's RINGO_DROP_COUNTER
// declares, summed over CPUs, found by its name among the maps of the
// programs that use the ring (looked for again at most once a second until
// found) or set with SetDropCounter; and, in overwrite mode, the records
// producers overwrote before a Reader of this process got to them.
func (k *KernelRing) Loss() (Loss, error) { return k.loss() }

// dropCounter is a kernel ring's RINGO_DROP_COUNTER map.
type dropCounter struct {
	mu       sync.Mutex
	fd       int // -1: not found (yet)
	cpus     int
	buf      []byte
	lastLook time.Time
}

// dropValueSize is sizeof(struct ringo_drops).
const dropValueSize = 16

// SetDropCounter tells the ring which map counts its drops: a per-CPU
// array with 4-byte keys and struct ringo_drops values, as
// RINGO_DROP_COUNTER declares (for example a cilium/ebpf *ebpf.Map).
// ringo duplicates the descriptor.
func (k *KernelRing) SetDropCounter(m interface{ FD() int }) error {
	info, err := sys.GetMapInfo(m.FD())
	if err != nil {
		return fmt.Errorf("ringo: drop counter of %s: %w", k, err)
	}
	if err := checkDropCounter(info); err != nil {
		return fmt.Errorf("ringo: drop counter of %s: %w", k, err)
	}
	fd, _, err := bpfmap.Dup(m.FD())
	if err != nil {
		return fmt.Errorf("ringo: drop counter of %s: %w", k, err)
	}
	k.drops.mu.Lock()
	defer k.drops.mu.Unlock()
	return k.drops.set(fd)
}

func checkDropCounter(info sys.MapInfo) error {
	if MapType(info.Type) != percpuArray || info.KeySize != 4 || info.ValueSize != dropValueSize || info.MaxEntries < 1 {
		return invalid("map %d (%s) is a %s with key size %d, value size %d: a drop counter is a percpu_array with key size 4 and value size %d (struct ringo_drops), as RINGO_DROP_COUNTER declares",
			info.ID, info.Name, bpfmap.TypeName(info.Type), info.KeySize, info.ValueSize, dropValueSize)
	}
	return nil
}

// percpuArray is BPF_MAP_TYPE_PERCPU_ARRAY.
const percpuArray MapType = 6

// set makes the map behind fd, which it owns from here on, the counter;
// called with mu held.
func (d *dropCounter) set(fd int) error {
	cpus, err := sys.PossibleCPUs()
	if err != nil {
		closeFD(fd)
		return err
	}
	if d.fd > 0 {
		closeFD(d.fd)
	}
	d.fd, d.cpus, d.buf = fd, cpus, make([]byte, cpus*dropValueSize)
	return nil
}

// loss reads the drop counter (finding it first if need be) and the
// overwrite counts.
func (k *KernelRing) loss() (Loss, error) {
	l := Loss{Overwritten: k.mem.overwritten.Load(), OverwrittenBytes: k.mem.overwrittenBytes.Load()}
	d := &k.drops
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fd <= 0 && time.Since(d.lastLook) >= time.Second {
		d.lastLook = time.Now()
		if fd := findDropCounter(k.info); fd > 0 {
			if err := d.set(fd); err != nil {
				return l, err
			}
		}
	}
	if d.fd <= 0 {
		return l, nil
	}
	if err := sys.MapLookupBytes(d.fd, 0, d.buf); err != nil {
		return l, fmt.Errorf("ringo: read the drop counter of %s: %w", k, err)
	}
	for c := range d.cpus {
		v := d.buf[c*dropValueSize:]
		l.Dropped += binary.NativeEndian.Uint64(v[0:8])
		l.DroppedBytes += binary.NativeEndian.Uint64(v[8:16])
	}
	l.Counted = true
	return l, nil
}

// findDropCounter looks for the counter of ring among the maps of the
// programs that use it: a map named bpfmap.DropCounterName(ring.Name) of the
// counter's shape. It returns an open descriptor, or -1.
func findDropCounter(ring sys.MapInfo) int {
	want := bpfmap.DropCounterName(ring.Name)
	var id uint32
	for {
		next, err := sys.NextProgID(id)
		if err != nil {
			return -1
		}
		id = next
		fd, err := sys.ProgFDByID(id)
		if err != nil {
			continue // gone meanwhile, or not ours to open
		}
		ids, err := sys.ProgMapIDs(fd)
		closeFD(fd)
		if err != nil || !slices.Contains(ids, ring.ID) {
			continue
		}
		for _, mid := range ids {
			if mid == ring.ID {
				continue
			}
			mfd, err := sys.MapFDByID(mid)
			if err != nil {
				continue
			}
			if info, err := sys.GetMapInfo(mfd); err == nil && info.Name == want && checkDropCounter(info) == nil {
				return mfd
			}
			closeFD(mfd)
		}
	}
}

// countDrop counts a reservation of n bytes refused because the ring was
// full.
func (m *memory) countDrop(n uint64) {
	m.dropped.Add(1)
	m.droppedBytes.Add(n)
}
