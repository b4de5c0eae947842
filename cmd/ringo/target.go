package main

import (
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"

	"github.com/ringo-bpf/ringo"
	"github.com/ringo-bpf/ringo/internal/bpfmap"
	"golang.org/x/sys/unix"
)

// bpffs is where list looks for pinned maps.
const bpffs = "/sys/fs/bpf"

// target is an open ring named on the command line. ring is it whatever its
// kind, src is it as a Reader consumes it (nil for a user ring, which the
// kernel consumes), and exactly one of kernel, user and shared is set, for
// what only that kind does.
type target struct {
	spec   string // as given
	kind   string // as list and show print it: ringbuf, user_ringbuf, shared
	path   string // pin or file, when known
	ring   ring
	src    ringo.Source
	kernel *ringo.KernelRing
	user   *ringo.UserRing
	shared *ringo.Ring
}

// ring is what every kind of ring does.
type ring interface {
	ringo.Inspectable
	Overwrite() bool
	Close() error
}

// set records the open ring in t.
func (t *target) set(kind string, r ring, src ringo.Source) *target {
	t.kind, t.ring, t.src = kind, r, src
	return t
}

// openTarget opens spec: id:N, a pinned path, or a shared ring's name.
func openTarget(spec string) (*target, error) {
	t := &target{spec: spec}
	var fd int
	var what string
	var err error
	switch {
	case strings.HasPrefix(spec, "id:"):
		id, perr := strconv.ParseUint(spec[3:], 10, 32)
		if perr != nil || id == 0 {
			return nil, usagef("bad target %q: a map ID is id:N with N a positive number", spec)
		}
		fd, what, err = bpfmap.ByID(uint32(id))
	case strings.Contains(spec, "/"):
		t.path = spec
		fd, what, err = bpfmap.Pinned(spec)
		var sfs unix.Statfs_t
		if err != nil && unix.Statfs(spec, &sfs) == nil && sfs.Type != unix.BPF_FS_MAGIC {
			return nil, fmt.Errorf("%w (a TARGET with a / is a pin; a shared ring is given by its name, with RINGO_DIR for its directory)", err)
		}
	default:
		r, err := ringo.Open(spec)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("no shared ring named %q in %s (ringo list shows the rings; give a kernel map as id:N or by its pinned path)", spec, ringo.SharedDir())
		}
		if err != nil {
			return nil, err
		}
		t.shared, t.path = r, r.Path()
		return t.set("shared", r, r), nil
	}
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd) // the rings take their own descriptors
	info, err := bpfmap.Info(fd, what)
	if err != nil {
		return nil, err
	}
	switch ringo.MapType(info.Type) {
	case ringo.RingBuf:
		if t.kernel, err = ringo.OpenMap(bpfmap.FD(fd)); err != nil {
			return nil, err
		}
		return t.set("ringbuf", t.kernel, t.kernel), nil
	case ringo.UserRingBuf:
		if t.user, err = ringo.OpenUserRing(bpfmap.FD(fd)); err != nil {
			return nil, err
		}
		return t.set("user_ringbuf", t.user, nil), nil
	}
	return nil, fmt.Errorf("%s is map %d, a %s map: ringo works with ringbuf and user_ringbuf maps", spec, info.ID, ringo.MapType(info.Type))
}

// source is the target as a Reader consumes it; user rings, which the
// kernel consumes, are refused.
func (t *target) source() (ringo.Source, error) {
	if t.src == nil {
		return nil, fmt.Errorf("%s is a user_ringbuf: the kernel consumes it (bpf_user_ringbuf_drain); use ringo peek to see its records", t.spec)
	}
	return t.src, nil
}

// Close closes the ring.
func (t *target) Close() error { return t.ring.Close() }

// ringInfo is one ring as list and show print it; the JSON names are a
// contract that scripts parse.
type ringInfo struct {
	ID           uint32  `json:"id,omitempty"`
	Name         string  `json:"name"`
	Type         string  `json:"type"`
	Size         int     `json:"size"`
	AvailData    uint64  `json:"avail_data"`
	ConsumerPos  uint64  `json:"consumer_pos"`
	ProducerPos  uint64  `json:"producer_pos"`
	PendingPos   uint64  `json:"pending_pos"`
	Path         string  `json:"path,omitempty"`
	Dropped      *uint64 `json:"dropped,omitempty"`
	DroppedBytes *uint64 `json:"dropped_bytes,omitempty"`
	Abandoned    *uint64 `json:"abandoned,omitempty"`
	// Overwrite mode only.
	Overwrite        bool    `json:"overwrite,omitempty"`
	OverwritePos     uint64  `json:"overwrite_pos,omitempty"`
	Overwritten      *uint64 `json:"overwritten,omitempty"`
	OverwrittenBytes *uint64 `json:"overwritten_bytes,omitempty"`
	// Note says what is wrong with positions that no healthy ring has;
	// AvailData is then clamped to 0 or Size.
	Note string `json:"note,omitempty"`
}

// info describes the open target; counters adds the ring's loss counters.
func (t *target) info(counters bool) ringInfo {
	p := t.ring.Positions()
	avail, note := occupancy(p, t.ring.Size())
	ri := ringInfo{Name: t.spec, Type: t.kind, Size: t.ring.Size(), AvailData: avail, Note: note,
		ConsumerPos: p.Consumer, ProducerPos: p.Producer, PendingPos: p.Pending, Path: t.path}
	if m, ok := t.ring.(interface {
		ID() uint32
		Name() string
	}); ok {
		ri.ID, ri.Name = m.ID(), m.Name() // a kernel map
	}
	if t.ring.Overwrite() {
		ri.Overwrite, ri.OverwritePos = true, p.Overwrite
	}
	if !counters {
		return ri // (looking for a kernel ring's counter walks every program)
	}
	if l, ok := t.loss(); ok {
		ri.Dropped, ri.DroppedBytes = &l.Dropped, &l.DroppedBytes
		if t.shared != nil { // (a kernel ring counts neither)
			ri.Abandoned = &l.Abandoned
			if ri.Overwrite {
				ri.Overwritten, ri.OverwrittenBytes = &l.Overwritten, &l.OverwrittenBytes
			}
		}
	}
	return ri
}

// loss is what the target's ring lost, and whether anything counts it: a
// shared ring always, a kernel ring when its programs declare a
// RINGO_DROP_COUNTER (bpf/ringo.h), a user ring never (its producers see
// every refusal themselves).
func (t *target) loss() (ringo.Loss, bool) {
	if t.src == nil {
		return ringo.Loss{}, false
	}
	l, err := t.src.Loss()
	return l, err == nil && l.Counted
}
