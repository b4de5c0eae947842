package ringo

import (
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/ringo-bpf/ringo/internal/sys"
	"golang.org/x/sys/unix"
)

// Shards is a fixed set of user-space rings, in process or shared between
// processes, that producers spread their records over, consumed by one
// Reader (Reader.AddSet). Two ways to choose a ring:
//
//   - ForKey: by a key's hash, so that every record of one key (a flow, a
//     process, a tenant) goes to one ring and stays in order;
//   - Ring(k) for a k of the producer's own (its index, its CPU): a producer
//     that keeps a ring to itself does not contend for a reservation lock.
//
// Records are in order within a ring, never across rings.
type Shards struct {
	rings []*Ring
}

// NewShards makes n in-process rings of size bytes each.
func NewShards(n, size int, opts ...Option) (*Shards, error) {
	if n <= 0 {
		return nil, fmt.Errorf("ringo: %d shards: need at least one: %w", n, unix.EINVAL)
	}
	s := &Shards{}
	for range n {
		r, err := New(size, opts...)
		if err != nil {
			s.Close()
			return nil, err
		}
		s.rings = append(s.rings, r)
	}
	return s, nil
}

// shardName is the shared ring that holds shard i of the set name.
func shardName(name string, i int) string { return fmt.Sprintf("%s.%d", name, i) }

// CreateShards creates n shared rings of size bytes, named name.0 to
// name.(n-1), for producers in any process (OpenShards) and one consumer.
func CreateShards(name string, n, size int, opts ...Option) (*Shards, error) {
	if n <= 0 {
		return nil, fmt.Errorf("ringo: %d shards: need at least one: %w", n, unix.EINVAL)
	}
	if _, err := gather("CreateShards", optDir|optGroup|optOverwrite, opts); err != nil {
		return nil, err
	}
	dir := WithDir(SharedDir(opts...))
	s := &Shards{}
	for i := range n {
		r, err := Create(shardName(name, i), size, opts...)
		if err != nil {
			s.Close()
			for j := range i {
				Remove(shardName(name, j), dir)
			}
			return nil, err
		}
		s.rings = append(s.rings, r)
	}
	return s, nil
}

// OpenShards opens the shared rings of the set name: name.0, name.1, ...
// up to the first that does not exist.
func OpenShards(name string, opts ...Option) (*Shards, error) {
	s := &Shards{}
	for i := 0; ; i++ {
		r, err := Open(shardName(name, i), opts...)
		if errors.Is(err, fs.ErrNotExist) && i > 0 {
			return s, nil
		}
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("ringo: open shards %q: %w", name, err)
		}
		s.rings = append(s.rings, r)
	}
}

// RemoveShards removes the shared rings of the set name.
func RemoveShards(name string, opts ...Option) error {
	var errs []error
	for i := 0; ; i++ {
		err := Remove(shardName(name, i), opts...)
		if errors.Is(err, fs.ErrNotExist) {
			if i == 0 {
				return fmt.Errorf("ringo: remove shards %q: %w", name, err)
			}
			return errors.Join(errs...)
		}
		errs = append(errs, err)
	}
}

// Keys returns the keys of the rings: 0 to n-1, as for an array
// KernelRingSet.
func (s *Shards) Keys() []uint32 {
	keys := make([]uint32, len(s.rings))
	for i := range keys {
		keys[i] = uint32(i)
	}
	return keys
}

// Ring returns the ring at key, or nil.
func (s *Shards) Ring(key uint32) *Ring {
	if int64(key) >= int64(len(s.rings)) {
		return nil
	}
	return s.rings[key]
}

// Key returns the key of a ring of the set (Record.Source).
func (s *Shards) Key(src Source) (uint32, bool) {
	for i, r := range s.rings {
		if Source(r) == src {
			return uint32(i), true
		}
	}
	return 0, false
}

// ForKey returns the ring for key: always the same one for the same key,
// keys spread evenly whatever their pattern (a multiplicative hash). It
// returns nil for a set without rings (the zero Shards). A producer that
// wants a ring of its own takes Ring(k) for a k of its own instead.
func (s *Shards) ForKey(key uint64) *Ring {
	if len(s.rings) == 0 {
		return nil
	}
	h := key * 0x9e3779b97f4a7c15
	return s.rings[(h>>32)%uint64(len(s.rings))]
}

// Close closes every ring.
func (s *Shards) Close() error {
	var errs []error
	for _, r := range s.rings {
		errs = append(errs, r.Close())
	}
	return errors.Join(errs...)
}

func (s *Shards) members() []Source {
	out := make([]Source, len(s.rings))
	for i, r := range s.rings {
		out[i] = r
	}
	return out
}

// A Shards set never changes: nothing to follow.
func (s *Shards) generation() uint64         { return 0 }
func (s *Shards) watch(*sys.Poller) bool     { return false }
func (s *Shards) unwatch(*sys.Poller)        {}
func (s *Shards) released(Source)            {}
func (s *Shards) refresh() error             { return nil }
func (s *Shards) followEvery() time.Duration { return 0 }
