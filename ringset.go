package ringo

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ringo-bpf/ringo/internal/bpfmap"
	"github.com/ringo-bpf/ringo/internal/sys"
	"golang.org/x/sys/unix"
)

// A RingSet is a group of rings that one Reader consumes together, following
// rings as they join and leave it: a *KernelRingSet (kernel rings in an array
// or hash of maps) or *Shards (user-space or shared rings). Records are in
// order within each ring, never across rings.
type RingSet interface {
	// members returns the rings in the set now.
	members() []Source
	// generation changes whenever members may have changed.
	generation() uint64
	// watch asks the set to interrupt p's wait when it changes, and
	// reports false for a set that never changes.
	watch(p *sys.Poller) bool
	unwatch(p *sys.Poller)
	// released tells the set that a Reader has drained and let go of a
	// ring that left it.
	released(s Source)
	// refresh looks for rings that others added or removed, and
	// followEvery says how often a Reader should ask (0: never).
	refresh() error
	followEvery() time.Duration
}

// readerSet is a RingSet followed by a Reader.
type readerSet struct {
	set         RingSet
	gen         uint64
	nextRefresh time.Time
	changes     bool // its changes interrupt the poller (watch)
}

// AddSet makes the Reader consume every ring of set, and follow the set:
// rings that join it are added, rings that leave it are drained, then
// dropped. Records tell their ring by Record.Source; the set maps it back to
// its key or index.
func (r *Reader) AddSet(set RingSet) error {
	if err := r.lock("AddSet"); err != nil {
		return err
	}
	defer r.unlock()
	for _, rs := range r.sets {
		if rs.set == set {
			return errors.New("ringo: the set is in this reader already")
		}
	}
	rs := &readerSet{set: set, gen: set.generation()}
	for _, s := range set.members() {
		if err := r.add(s, set); err != nil {
			r.dropSetRings(set)
			return err
		}
	}
	rs.changes = set.watch(r.poller)
	if every := set.followEvery(); every > 0 {
		rs.nextRefresh = time.Now().Add(every)
	}
	r.sets = append(r.sets, rs)
	r.chooseSleep() // a set that changes wakes the poller
	return nil
}

// dropSetRings takes a set's rings out at once (AddSet failed half way).
func (r *Reader) dropSetRings(set RingSet) {
	kept := r.rings[:0]
	for _, rr := range r.rings {
		if rr.set == set {
			r.poller.Remove(rr.src.pollFD())
			rr.src.detach()
			continue
		}
		kept = append(kept, rr)
	}
	r.rings = kept
	r.ringsChanged()
	r.turn, r.taken = 0, 0
}

// follow brings the Reader's rings in line with its sets, and drops the
// removed rings that are drained; r.mu held.
func (r *Reader) follow() {
	// next calls follow for every record it hands out: with no set to
	// follow and no ring being removed (the usual Reader) that costs a
	// test, inlined, not a call.
	if len(r.sets) != 0 || r.removing != 0 {
		r.followSets()
	}
}

// followSets is follow's work: the sets' changes, and the rings removed.
func (r *Reader) followSets() {
	// The clock is read only for sets that are refreshed on a timer:
	// time.Now costs tens of nanoseconds, more than handing out a record.
	var now time.Time
	for _, rs := range r.sets {
		if !rs.nextRefresh.IsZero() && now.IsZero() {
			now = time.Now()
		}
		if due := !rs.nextRefresh.IsZero() && !now.Before(rs.nextRefresh); due {
			rs.set.refresh() // a failed look is tried again next time
			rs.nextRefresh = now.Add(rs.set.followEvery())
		}
		if g := rs.set.generation(); g != rs.gen {
			rs.gen = g
			r.reconcile(rs.set)
		}
	}
	r.sweep()
}

// reconcile adds the set's new rings and starts removing those that left.
func (r *Reader) reconcile(set RingSet) {
	in := map[Source]bool{}
	for _, s := range set.members() {
		in[s] = true
	}
	for _, rr := range r.rings {
		if rr.set == set {
			if in[rr.src] {
				delete(in, rr.src)
			} else {
				r.startRemoval(rr)
			}
		}
	}
	for s := range in {
		// A ring another Reader holds stays out; the set's next change
		// tries again.
		r.add(s, set)
	}
}

// nextRefresh is how long until a set is due to be looked at, or -1.
func (r *Reader) nextRefresh() time.Duration {
	d := time.Duration(-1)
	for _, rs := range r.sets {
		d = sooner(d, rs.nextRefresh)
	}
	return d
}

// watchers is the Readers' pollers a set wakes when it changes.
type watchers struct {
	mu sync.Mutex
	ps []*sys.Poller
}

func (w *watchers) watch(p *sys.Poller) {
	w.mu.Lock()
	w.ps = append(w.ps, p)
	w.mu.Unlock()
}

func (w *watchers) unwatch(p *sys.Poller) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, q := range w.ps {
		if q == p {
			w.ps = append(w.ps[:i], w.ps[i+1:]...)
			return
		}
	}
}

func (w *watchers) wake() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, p := range w.ps {
		p.Interrupt()
	}
}

func (w *watchers) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.ps)
}

// Map-of-maps types, as in enum bpf_map_type.
const (
	arrayOfMaps MapType = bpfmap.ArrayOfMaps
	hashOfMaps  MapType = bpfmap.HashOfMaps
)

// RingSetSpec describes a set of kernel rings to create.
type RingSetSpec struct {
	// Name names the outer map (and, with a suffix, its rings).
	Name string
	// Keyed makes a hash of maps, whose rings are added and removed by
	// key at run time (Add, Remove); otherwise an array of maps with a
	// ring at every index.
	Keyed bool
	// Shards is how many rings an array set holds; 0 means one per
	// possible CPU, for programs that pick the ring of the CPU they run
	// on.
	Shards int
	// MaxKeys is how many rings a keyed set can hold (default 1024).
	MaxKeys int
	// Size is the data size of every ring, and the template's.
	Size int
	// Sizes, for an array set, gives each shard its own size (len must be
	// the number of shards); 0 entries take Size.
	Sizes []int
	// FollowEvery is how often a Reader looks for rings that others (BPF
	// programs, other processes) put in or took out of the outer map. 0
	// means only changes made through this KernelRingSet are followed.
	FollowEvery time.Duration
}

// KernelRingSet is a set of BPF_MAP_TYPE_RINGBUF maps held in an outer
// BPF_MAP_TYPE_ARRAY_OF_MAPS or BPF_MAP_TYPE_HASH_OF_MAPS, so that BPF
// programs choose a ring per CPU, per shard or per key (see bpf/ringo.h),
// and one Reader consumes them all (Reader.AddSet). Keys are 32-bit. Its
// methods are safe for concurrent use.
type KernelRingSet struct {
	kernelMap // the outer map: give its FD to BPF programs (or Pin it) so they can pick their ring
	every     time.Duration

	mu      sync.Mutex
	rings   map[uint32]*KernelRing
	leaving map[*KernelRing]uint32 // left the set, not yet let go by the Reader
	closed  bool

	gen atomic.Uint64
	w   watchers
}

// CreateRingSet creates the outer map and, for an array set, every ring.
func CreateRingSet(spec RingSetSpec) (*KernelRingSet, error) {
	if err := validateSize(int64(spec.Size)); err != nil {
		return nil, fmt.Errorf("ringo: ring set %q: %w", spec.Name, err)
	}
	typ, entries := arrayOfMaps, spec.Shards
	if spec.Keyed {
		typ, entries = hashOfMaps, spec.MaxKeys
		if entries == 0 {
			entries = 1024
		}
	} else if entries == 0 {
		n, err := sys.PossibleCPUs()
		if err != nil {
			return nil, fmt.Errorf("ringo: ring set %q: %w", spec.Name, err)
		}
		entries = n
	}
	if entries <= 0 || (spec.Sizes != nil && (spec.Keyed || len(spec.Sizes) != entries)) {
		return nil, fmt.Errorf("ringo: ring set %q: %d shards and %d sizes: give Sizes only for an array set, one per shard: %w",
			spec.Name, entries, len(spec.Sizes), unix.EINVAL)
	}
	// The template the kernel checks every ring against (type, flags):
	// rings of other sizes fit, ringbufs do not compare sizes.
	tmpl, err := sys.MapCreate(uint32(RingBuf), 0, 0, uint32(spec.Size), 0, "")
	if err != nil {
		return nil, fmt.Errorf("ringo: ring set %q: create template ring: %w", spec.Name, bpfmap.Err(err))
	}
	fd, err := sys.MapCreateInner(uint32(typ), 4, 4, uint32(entries), 0, spec.Name, tmpl)
	closeFD(tmpl)
	if err != nil {
		return nil, fmt.Errorf("ringo: create ring set %q (%v of %d): %w", spec.Name, typ, entries, bpfmap.Err(err))
	}
	s, err := newKernelRingSet(fd, spec.Name, spec.FollowEvery)
	if err != nil {
		return nil, err
	}
	if !spec.Keyed {
		for i := range entries {
			size := spec.Size
			if spec.Sizes != nil && spec.Sizes[i] != 0 {
				size = spec.Sizes[i]
			}
			if _, err := s.Add(uint32(i), size); err != nil {
				s.Close()
				return nil, err
			}
		}
	}
	return s, nil
}

// OpenRingSet follows the ring set behind m, an array or hash of maps of
// ringbufs (for instance a map of a collection loaded with cilium/ebpf),
// opening every ring it holds. The Reader looks for rings that come and go
// every followEvery (0: only at Refresh).
func OpenRingSet(m interface{ FD() int }, followEvery time.Duration) (*KernelRingSet, error) {
	fd, what, err := bpfmap.Dup(m.FD())
	if err != nil {
		return nil, err
	}
	return openRingSet(fd, what, followEvery)
}

// OpenRingSetPinned follows the ring set pinned at path.
func OpenRingSetPinned(path string, followEvery time.Duration) (*KernelRingSet, error) {
	fd, what, err := bpfmap.Pinned(path)
	if err != nil {
		return nil, err
	}
	return openRingSet(fd, what, followEvery)
}

func openRingSet(fd int, what string, followEvery time.Duration) (*KernelRingSet, error) {
	s, err := newKernelRingSet(fd, what, followEvery)
	if err != nil {
		return nil, err
	}
	if err := s.refresh(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func newKernelRingSet(fd int, what string, every time.Duration) (*KernelRingSet, error) {
	info, err := bpfmap.Info(fd, what)
	if err != nil {
		closeFD(fd)
		return nil, err
	}
	if t := MapType(info.Type); (t != arrayOfMaps && t != hashOfMaps) || info.KeySize != 4 {
		closeFD(fd)
		return nil, fmt.Errorf("ringo: %s is map %d, a %v map with %d-byte keys: a ring set is an array_of_maps or hash_of_maps with 4-byte keys",
			what, info.ID, t, info.KeySize)
	}
	return &KernelRingSet{kernelMap: kernelMap{fd: fd, info: info}, every: every,
		rings: map[uint32]*KernelRing{}, leaving: map[*KernelRing]uint32{}}, nil
}

// Add creates a ring of size bytes and puts it in the set at key (an index
// below the number of shards, for an array set). A key that holds a ring
// already is refused: Remove it first.
func (s *KernelRingSet) Add(key uint32, size int) (*KernelRing, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if _, ok := s.rings[key]; ok {
		return nil, fmt.Errorf("ringo: ring set %q: key %d holds a ring already: Remove it first: %w", s.info.Name, key, unix.EEXIST)
	}
	k, err := CreateKernelRing(fmt.Sprintf("%.10s_%d", s.info.Name, key), size)
	if err != nil {
		return nil, err
	}
	if err := sys.MapUpdateU32(s.fd, key, uint32(k.FD())); err != nil {
		k.Close()
		if errors.Is(err, unix.E2BIG) || errors.Is(err, unix.ENOSPC) {
			return nil, fmt.Errorf("ringo: ring set %q: key %d is beyond its %d entries: %w", s.info.Name, key, s.info.MaxEntries, err)
		}
		return nil, fmt.Errorf("ringo: ring set %q: put ring at key %d: %w", s.info.Name, key, bpfmap.Err(err))
	}
	s.rings[key] = k
	s.changed()
	return k, nil
}

// Remove takes the ring at key out of the set. BPF programs no longer find
// it; a Reader following the set consumes what it holds, then lets it go,
// and the set closes it. Without a Reader it is closed at once.
func (s *KernelRingSet) Remove(key uint32) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.rings[key]
	if !ok {
		return fmt.Errorf("ringo: ring set %q has no ring at key %d: %w", s.info.Name, key, unix.ENOENT)
	}
	if err := sys.MapDeleteU32(s.fd, key); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("ringo: ring set %q: remove key %d: %w", s.info.Name, key, bpfmap.Err(err))
	}
	s.leave(key, k)
	s.changed()
	return nil
}

// leave moves k out of the set; s.mu held.
func (s *KernelRingSet) leave(key uint32, k *KernelRing) {
	delete(s.rings, key)
	if s.w.count() == 0 {
		k.Close()
		return
	}
	s.leaving[k] = key
}

func (s *KernelRingSet) changed() {
	s.gen.Add(1)
	s.w.wake()
}

// Refresh reads the outer map again, opening the rings that others put in
// it and letting go of those they took out. A Reader following the set
// calls it every FollowEvery.
func (s *KernelRingSet) refresh() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	seen := map[uint32]bool{}
	changed := false
	for key, first := uint32(0), true; ; first = false {
		next, err := sys.MapNextKeyU32(s.fd, key, first)
		if errors.Is(err, unix.ENOENT) {
			break
		}
		if err != nil {
			return fmt.Errorf("ringo: ring set %q: walk keys: %w", s.info.Name, bpfmap.Err(err))
		}
		key = next
		id, err := sys.MapLookupU32(s.fd, key)
		if errors.Is(err, unix.ENOENT) {
			continue // an empty slot of an array, or deleted meanwhile
		}
		if err != nil {
			return fmt.Errorf("ringo: ring set %q: look up key %d: %w", s.info.Name, key, bpfmap.Err(err))
		}
		seen[key] = true
		if k, ok := s.rings[key]; ok && k.ID() == id {
			continue
		} else if ok {
			s.leave(key, k) // replaced by another ring
		}
		k, err := openMapID(id)
		if errors.Is(err, unix.ENOENT) {
			continue // gone since the lookup
		}
		if err != nil {
			return fmt.Errorf("ringo: ring set %q: key %d: %w", s.info.Name, key, err)
		}
		s.rings[key] = k
		changed = true
	}
	for key, k := range s.rings {
		if !seen[key] {
			s.leave(key, k)
			changed = true
		}
	}
	if changed {
		s.changed()
	}
	return nil
}

// Ring returns the ring at key, or nil.
func (s *KernelRingSet) Ring(key uint32) *KernelRing {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rings[key]
}

// Keys returns the keys that hold rings, in order.
func (s *KernelRingSet) Keys() []uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]uint32, 0, len(s.rings))
	for k := range s.rings {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	return keys
}

// Key returns the key of a ring of the set (Record.Source), including one
// that has left it and is being drained.
func (s *KernelRingSet) Key(src Source) (uint32, bool) {
	k, ok := src.(*KernelRing)
	if !ok {
		return 0, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for key, r := range s.rings {
		if r == k {
			return key, true
		}
	}
	key, ok := s.leaving[k]
	return key, ok
}

// Close closes the outer map and every ring. Close the Readers that
// follow the set first.
func (s *KernelRingSet) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	var errs []error
	for _, k := range s.rings {
		errs = append(errs, k.Close())
	}
	for k := range s.leaving {
		errs = append(errs, k.Close())
	}
	s.closed = true
	closeFD(s.fd)
	return errors.Join(errs...)
}

func (s *KernelRingSet) members() []Source {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Source, 0, len(s.rings))
	for _, k := range s.rings {
		out = append(out, k)
	}
	return out
}

func (s *KernelRingSet) generation() uint64         { return s.gen.Load() }
func (s *KernelRingSet) watch(p *sys.Poller) bool   { s.w.watch(p); return true }
func (s *KernelRingSet) unwatch(p *sys.Poller)      { s.w.unwatch(p) }
func (s *KernelRingSet) followEvery() time.Duration { return s.every }

func (s *KernelRingSet) released(src Source) {
	k := src.(*KernelRing)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.leaving[k]; ok {
		delete(s.leaving, k)
		k.Close()
	}
}

// openMapID maps the ring buffer map with the given ID, a member of a set.
func openMapID(id uint32) (*KernelRing, error) {
	fd, what, err := bpfmap.ByID(id)
	if err != nil {
		return nil, fmt.Errorf("ringo: %w", err)
	}
	return openKernelRing(fd, what)
}
