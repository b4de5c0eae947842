// Package bpfmap finds and opens BPF maps the way ringo and its command
// need: by descriptor, by pin, by ID, or by walking the machine's maps and
// pins as bpftool does, with errors that say what went wrong and what to do.
package bpfmap

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/ringo-bpf/ringo/internal/sys"
	"golang.org/x/sys/unix"
)

// Map types, as in enum bpf_map_type.
const (
	ArrayOfMaps = 12
	HashOfMaps  = 13
	PercpuArray = 6
	RingBuf     = 27
	UserRingBuf = 31
)

// Each way of getting a map's descriptor returns the descriptor (owned by
// the caller), how to name the map in errors, and an error that says what
// failed.

// Dup duplicates fd, a map's descriptor that stays its owner's.
func Dup(fd int) (int, string, error) {
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return -1, "", fmt.Errorf("duplicate map fd %d: %w", fd, err)
	}
	return dup, fmt.Sprintf("fd %d", fd), nil
}

// Pinned opens the object pinned at path.
func Pinned(path string) (int, string, error) {
	fd, err := sys.ObjGet(path)
	if err != nil {
		return -1, "", pinError(path, err)
	}
	return fd, path, nil
}

// pinError explains why the pinned object at path could not be opened.
// The kernel answers EACCES ("permission denied", even to root) for a path
// that is not a pinned object: a file outside a BPF file system, or a
// directory in one.
func pinError(path string, err error) error {
	if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.EINVAL) {
		var sfs unix.Statfs_t
		if unix.Statfs(path, &sfs) == nil && sfs.Type != unix.BPF_FS_MAGIC {
			return fmt.Errorf("%s is not on a BPF file system, so it is not a pinned map (pins live in one, usually /sys/fs/bpf: mount -t bpf bpf /sys/fs/bpf): %w", path, err)
		}
		var st unix.Stat_t
		if unix.Stat(path, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
			return fmt.Errorf("%s is a directory of the BPF file system, not a pinned map: %w", path, err)
		}
	}
	return fmt.Errorf("open pinned map %s: %w", path, Err(err))
}

// ByID opens the map with the given ID.
func ByID(id uint32) (int, string, error) {
	fd, err := sys.MapFDByID(id)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return -1, "", fmt.Errorf("no map with id %d (bpftool map list shows the maps): %w", id, err)
		}
		return -1, "", fmt.Errorf("open map id %d: %w", id, Err(err))
	}
	return fd, fmt.Sprintf("map id %d", id), nil
}

// Info reads the info of the map behind fd, named what in errors: a
// descriptor of another BPF object (a program, a link) is refused, saying
// what it is.
func Info(fd int, what string) (sys.MapInfo, error) {
	info, err := sys.GetMapInfo(fd)
	if err == nil {
		return info, nil
	}
	var nm *sys.NotMapError
	switch {
	case errors.As(err, &nm):
		return info, fmt.Errorf("%s is %w", what, err)
	case errors.Is(err, unix.EINVAL):
		return info, fmt.Errorf("%s is not a BPF map: %w", what, err)
	}
	return info, fmt.Errorf("%s: read map info: %w", what, Err(err))
}

// Err explains the errors every BPF call can give.
func Err(err error) error {
	if errors.Is(err, unix.EPERM) {
		return fmt.Errorf("%w: BPF needs CAP_BPF (with CAP_PERFMON for tracing programs) or root", err)
	}
	return err
}

// TypeName is the name of a map type, as bpftool prints it.
func TypeName(t uint32) string {
	names := [...]string{"unspec", "hash", "array", "prog_array", "perf_event_array", "percpu_hash",
		"percpu_array", "stack_trace", "cgroup_array", "lru_hash", "lru_percpu_hash", "lpm_trie",
		"array_of_maps", "hash_of_maps", "devmap", "sockmap", "cpumap", "xskmap", "sockhash",
		"cgroup_storage", "reuseport_sockarray", "percpu_cgroup_storage", "queue", "stack",
		"sk_storage", "devmap_hash", "struct_ops", "ringbuf", "inode_storage", "task_storage",
		"bloom_filter", "user_ringbuf", "cgrp_storage", "arena"}
	if int(t) < len(names) {
		return names[t]
	}
	return fmt.Sprintf("type %d", t)
}

// Rings lists the BPF_MAP_TYPE_RINGBUF and BPF_MAP_TYPE_USER_RINGBUF maps on
// the machine, by map ID. It needs CAP_SYS_ADMIN (root), like bpftool map
// list. Maps that go away while it walks are left out.
func Rings() ([]sys.MapInfo, error) {
	var out []sys.MapInfo
	for id := uint32(0); ; {
		next, err := sys.NextMapID(id)
		if errors.Is(err, unix.ENOENT) {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("list maps: %w", Err(err))
		}
		id = next
		fd, err := sys.MapFDByID(id)
		if errors.Is(err, unix.ENOENT) {
			continue // gone meanwhile
		}
		if err != nil {
			return out, fmt.Errorf("open map id %d: %w", id, Err(err))
		}
		info, err := sys.GetMapInfo(fd)
		unix.Close(fd)
		if err != nil {
			return out, fmt.Errorf("map id %d: read map info: %w", id, Err(err))
		}
		if info.Type == RingBuf || info.Type == UserRingBuf {
			out = append(out, info)
		}
	}
}

// Describe reads the info of the map with the given ID, or pinned at path
// if path is not empty, whatever its type.
func Describe(id uint32, path string) (sys.MapInfo, error) {
	var fd int
	var what string
	var err error
	if path != "" {
		fd, what, err = Pinned(path)
	} else {
		fd, what, err = ByID(id)
	}
	if err != nil {
		return sys.MapInfo{}, err
	}
	defer unix.Close(fd)
	return Info(fd, what)
}

// PinnedMaps walks the BPF file system under dir (usually /sys/fs/bpf) and
// returns the path of every pinned map by map ID; when a map is pinned twice
// the first path in lexical order wins. Pins of other objects and paths it
// may not open are skipped. A dir that does not exist yields an empty
// result.
func PinnedMaps(dir string) (map[uint32]string, error) {
	out := map[uint32]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path == dir {
				return err
			}
			return nil // an unreadable subdirectory
		}
		if !d.Type().IsRegular() {
			return nil
		}
		fd, err := sys.ObjGet(path)
		if err != nil {
			return nil
		}
		info, err := sys.GetMapInfo(fd)
		unix.Close(fd)
		if err != nil {
			return nil // a program or link
		}
		if _, ok := out[info.ID]; !ok {
			out[info.ID] = path
		}
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return out, fmt.Errorf("walk pinned maps under %s: %w", dir, err)
	}
	return out, nil
}

// FD is a map descriptor owned by someone else, as the constructors of
// ringo's kernel rings take one (anything with FD() int).
type FD int

// FD returns the descriptor.
func (f FD) FD() int { return int(f) }

// DropCounterName is the name bpf/ringo.h's RINGO_DROP_COUNTER gives the
// counter of the ring named ring, as the kernel keeps it (15 characters).
func DropCounterName(ring string) string {
	n := ring + "_drops"
	if len(n) > 15 {
		n = n[:15]
	}
	return n
}
