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

// target is an open ring named on the command line: exactly one of kernel,
// user and shared is set.
type target struct {
	spec   string // as given
	kernel *ringo.KernelRing
	user   *ringo.UserRing
	shared *ringo.Ring
	path   string // pin or file, when known
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
		return t, nil
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
		t.kernel, err = ringo.OpenMap(bpfmap.FD(fd))
	case ringo.UserRingBuf:
		t.user, err = ringo.OpenUserRing(bpfmap.FD(fd))
	default:
		return nil, fmt.Errorf("%s is map %d, a %s map: ringo works with ringbuf and user_ringbuf maps", spec, info.ID, ringo.MapType(info.Type))
	}
	if err != nil {
		return nil, err
	}
	return t, nil
}

// ring is the target as the library's inspection functions take it.
func (t *target) ring() ringo.Inspectable {
	switch {
	case t.kernel != nil:
		return t.kernel
	case t.user != nil:
		return t.user
	}
	return t.shared
}

// source is the target as a Reader consumes it; user rings, which the
// kernel consumes, are refused.
func (t *target) source() (ringo.Source, error) {
	switch {
	case t.user != nil:
		return nil, fmt.Errorf("%s is a user_ringbuf: the kernel consumes it (bpf_user_ringbuf_drain); use ringo peek to see its records", t.spec)
	case t.kernel != nil:
		return t.kernel, nil
	}
	return t.shared, nil
}

// kind is the target's type as list and show print it.
func (t *target) kind() string {
	switch {
	case t.kernel != nil:
		return "ringbuf"
	case t.user != nil:
		return "user_ringbuf"
	}
	return "shared"
}

// Close closes the ring.
func (t *target) Close() error {
	switch {
	case t.kernel != nil:
		return t.kernel.Close()
	case t.user != nil:
		return t.user.Close()
	}
	return t.shared.Close()
}

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

// info describes the open target; counters adds a shared ring's drop and
// abandon counters.
func (t *target) info(counters bool) ringInfo {
	r := t.ring()
	p := r.Positions()
	avail, note := occupancy(p, r.Size())
	ri := ringInfo{Type: t.kind(), Size: r.Size(), AvailData: avail, Note: note,
		ConsumerPos: p.Consumer, ProducerPos: p.Producer, PendingPos: p.Pending, Path: t.path}
	if t.shared != nil && t.shared.Overwrite() {
		l, _ := t.shared.Loss()
		ri.Overwrite, ri.OverwritePos, ri.Overwritten, ri.OverwrittenBytes = true, p.Overwrite, &l.Overwritten, &l.OverwrittenBytes
	} else if t.kernel != nil && t.kernel.Overwrite() {
		ri.Overwrite, ri.OverwritePos = true, p.Overwrite
	}
	switch {
	case t.kernel != nil:
		ri.ID, ri.Name = t.kernel.ID(), t.kernel.Name()
	case t.user != nil:
		ri.ID, ri.Name = t.user.ID(), t.user.Name()
	default:
		ri.Name = t.spec
		if counters {
			l, _ := t.shared.Loss()
			ri.Abandoned = &l.Abandoned
		}
	}
	if !counters {
		return ri // (looking for a kernel ring's counter walks every program)
	}
	if l, ok := t.loss(); ok {
		ri.Dropped, ri.DroppedBytes = &l.Dropped, &l.DroppedBytes
	}
	return ri
}

// loss is what the target's ring lost, and whether anything counts it: a
// shared ring always, a kernel ring when its programs declare a
// RINGO_DROP_COUNTER (bpf/ringo.h), a user ring never (its producers see
// every refusal themselves).
func (t *target) loss() (ringo.Loss, bool) {
	var src ringo.Source
	switch {
	case t.kernel != nil:
		src = t.kernel
	case t.shared != nil:
		src = t.shared
	default:
		return ringo.Loss{}, false
	}
	l, err := src.Loss()
	return l, err == nil && l.Counted
}
