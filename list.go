package ringo

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"github.com/ringo-bpf/ringo/internal/sys"
	"golang.org/x/sys/unix"
)

// MapInfo describes a kernel ring buffer map.
type MapInfo struct {
	ID   uint32
	Name string
	Type MapType // RingBuf or UserRingBuf in KernelRings' results
	Size int     // bytes of the data area (max_entries)
}

// KernelRings lists the BPF_MAP_TYPE_RINGBUF and BPF_MAP_TYPE_USER_RINGBUF
// maps on the machine, by map ID. It needs CAP_SYS_ADMIN (root), like
// bpftool map list. Maps that go away while it walks are left out.
func KernelRings() ([]MapInfo, error) {
	var out []MapInfo
	for id := uint32(0); ; {
		next, err := sys.NextMapID(id)
		if errors.Is(err, unix.ENOENT) {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("ringo: list maps: %w", bpfError(err))
		}
		id = next
		fd, err := sys.MapFDByID(id)
		if errors.Is(err, unix.ENOENT) {
			continue // gone meanwhile
		}
		if err != nil {
			return out, fmt.Errorf("ringo: open map id %d: %w", id, bpfError(err))
		}
		info, err := sys.GetMapInfo(fd)
		closeFD(fd)
		if err != nil {
			return out, fmt.Errorf("ringo: map id %d: read map info: %w", id, bpfError(err))
		}
		if t := MapType(info.Type); t == RingBuf || t == UserRingBuf {
			out = append(out, MapInfo{ID: info.ID, Name: info.Name, Type: t, Size: int(info.MaxEntries)})
		}
	}
}

// LookupMap describes the map with the given ID, whatever its type, so
// that a caller can tell a ringbuf from a user_ringbuf before opening it.
func LookupMap(id uint32) (MapInfo, error) {
	fd, err := sys.MapFDByID(id)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return MapInfo{}, fmt.Errorf("ringo: no map with id %d (bpftool map list shows the maps): %w", id, err)
		}
		return MapInfo{}, fmt.Errorf("ringo: open map id %d: %w", id, bpfError(err))
	}
	defer closeFD(fd)
	return describeMap(fd, fmt.Sprintf("map id %d", id))
}

// LookupPinned describes the map pinned at path, whatever its type. A pin
// of another BPF object (a program, a link) is refused, saying what it is.
func LookupPinned(path string) (MapInfo, error) {
	fd, _, err := pinnedMapFD(path)
	if err != nil {
		return MapInfo{}, err
	}
	defer closeFD(fd)
	return describeMap(fd, path)
}

func describeMap(fd int, what string) (MapInfo, error) {
	info, err := mapInfo(fd, what)
	if err != nil {
		return MapInfo{}, err
	}
	return MapInfo{ID: info.ID, Name: info.Name, Type: MapType(info.Type), Size: int(info.MaxEntries)}, nil
}

// PinnedMaps walks the BPF file system under dir (usually /sys/fs/bpf)
// and returns the path of every pinned map by map ID; when a map is pinned
// twice the first path in lexical order wins. Pins of other objects and
// paths it may not open are skipped. A dir that does not exist yields an
// empty result.
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
		closeFD(fd)
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
		return out, fmt.Errorf("ringo: walk pinned maps under %s: %w", dir, err)
	}
	return out, nil
}

// SharedDir returns the directory where named rings live, given the same
// options as Create and Open: WithDir, else RINGO_DIR, else /dev/shm/ringo
// for root and /dev/shm/ringo-UID for other users.
func SharedDir(opts ...Option) string {
	o, _ := gather("SharedDir", optDir, opts) // (other options ignored)
	return o.dir
}

// SharedRings lists the names of the shared rings in SharedDir(opts...),
// sorted. A directory that does not exist holds no rings. The names are
// those of the files; Open checks that each is a ring.
func SharedRings(opts ...Option) ([]string, error) {
	dir := SharedDir(opts...)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ringo: list shared rings: %w", err)
	}
	var names []string
	for _, e := range entries {
		n := e.Name()
		if !e.Type().IsRegular() || checkName(n) != nil {
			continue // a wake-up pipe, a temporary file, not a ring's name
		}
		names = append(names, n)
	}
	sort.Strings(names)
	return names, nil
}
