package ringo

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/ringo-bpf/ringo/internal/sys"
	"golang.org/x/sys/unix"
)

// DefaultDir is where named rings live unless RINGO_DIR or WithDir says
// otherwise: a directory in the shared-memory file system, so a ring's
// memory is RAM, shared by every process that maps it.
const DefaultDir = "/dev/shm/ringo"

// SharedOption configures Create, Open and Remove.
type SharedOption func(*sharedOptions)

type sharedOptions struct {
	dir       string
	group     bool
	overwrite bool
}

// WithDir places named rings in dir instead of RINGO_DIR or DefaultDir.
func WithDir(dir string) SharedOption { return func(o *sharedOptions) { o.dir = dir } }

// WithGroupAccess lets the file's group open the ring too (mode 0660 rather
// than 0600).
func WithGroupAccess() SharedOption { return func(o *sharedOptions) { o.group = true } }

func sharedOpts(opts []SharedOption) sharedOptions {
	o := sharedOptions{dir: os.Getenv("RINGO_DIR")}
	for _, opt := range opts {
		opt(&o)
	}
	if o.dir == "" {
		o.dir = DefaultDir
	}
	return o
}

// ringPaths returns the ring file and doorbell pipe of a named ring.
func (o sharedOptions) ringPaths(name string) (ring, bell string, err error) {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") || strings.HasSuffix(name, ".wake") || strings.Contains(name, ".tmp.") {
		return "", "", fmt.Errorf("ringo: ring name %q is not a plain file name (no '/', not ending in .wake): %w", name, unix.EINVAL)
	}
	p := filepath.Join(o.dir, name)
	return p, p + ".wake", nil
}

func (o sharedOptions) mode() uint32 {
	if o.group {
		return 0o660
	}
	return 0o600
}

// Create creates a ring named name with a data area of size bytes, in
// shared memory that any process may Open by name. Producers in every
// process use the same producer API; one Reader, in any process, consumes
// it. The ring exists until Remove. It fails if a ring of that name
// exists already.
func Create(name string, size int, opts ...SharedOption) (*Ring, error) {
	if err := ValidateSize(int64(size)); err != nil {
		return nil, err
	}
	o := sharedOpts(opts)
	path, bellPath, err := o.ringPaths(name)
	if err != nil {
		return nil, err
	}
	dirMode := os.FileMode(0o700)
	if o.group {
		dirMode = 0o770
	}
	if err := os.MkdirAll(o.dir, dirMode); err != nil {
		return nil, fmt.Errorf("ringo: create ring %q: %w", name, err)
	}
	// Build the ring under a temporary name and link it into place once
	// whole, so that no process ever opens a ring half made.
	tmp := fmt.Sprintf("%s.tmp.%d", path, os.Getpid())
	fd, err := unix.Open(tmp, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, o.mode())
	if err != nil {
		return nil, fmt.Errorf("ringo: create ring %q: %w", name, &os.PathError{Op: "create", Path: tmp, Err: err})
	}
	defer os.Remove(tmp)
	unix.Fchmod(fd, o.mode()) // not narrowed by the umask
	if err := unix.Ftruncate(fd, int64(fileSize(size))); err != nil {
		closeFD(fd)
		return nil, fmt.Errorf("ringo: create ring %q: size its file: %w", name, err)
	}
	bell, err := sys.OpenFIFO(bellPath, o.mode())
	if err != nil {
		closeFD(fd)
		return nil, fmt.Errorf("ringo: create ring %q: %w", name, err)
	}
	r, err := mapRing(fd, size, name, bell)
	if err != nil {
		bell.Close()
		closeFD(fd)
		return nil, fmt.Errorf("ringo: create ring %q: %w", name, err)
	}
	if err := r.mem.trackOwners(r.mapping, fd); err != nil {
		r.Close()
		return nil, fmt.Errorf("ringo: create ring %q: %w", name, err)
	}
	id := ident{magic: ringMagic, version: ringVersion, pageSize: uint32(sys.PageSize), size: uint64(size), nonce: newNonce()}
	if o.overwrite {
		id.flags |= ringFlagOverwrite
		r.mem.enableOverwrite(r.mapping, true)
	}
	*identity(r.mapping) = id
	if err := os.Link(tmp, path); err != nil {
		r.Close()
		if errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("ringo: create ring %q: a ring of that name exists in %s: open it, or remove it first: %w", name, o.dir, fs.ErrExist)
		}
		return nil, fmt.Errorf("ringo: create ring %q: %w", name, err)
	}
	r.path = path
	return r, nil
}

// Open opens the named ring that Create made, in this or another process.
// It refuses a file that is not a whole ringo ring of this version, with an
// error that says what is wrong.
func Open(name string, opts ...SharedOption) (*Ring, error) {
	o := sharedOpts(opts)
	path, bellPath, err := o.ringPaths(name)
	if err != nil {
		return nil, err
	}
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("ringo: open ring %q: %w", name, &os.PathError{Op: "open", Path: path, Err: err})
	}
	size, flags, err := checkRingFile(fd)
	if err != nil {
		closeFD(fd)
		return nil, fmt.Errorf("ringo: open ring %q (%s): %w", name, path, err)
	}
	bell, err := sys.OpenFIFO(bellPath, o.mode())
	if err != nil {
		closeFD(fd)
		return nil, fmt.Errorf("ringo: open ring %q: %w", name, err)
	}
	r, err := mapRing(fd, size, name, bell)
	if err != nil {
		bell.Close()
		closeFD(fd)
		return nil, fmt.Errorf("ringo: open ring %q: %w", name, err)
	}
	if err := r.mem.trackOwners(r.mapping, fd); err != nil {
		r.Close()
		return nil, fmt.Errorf("ringo: open ring %q: %w", name, err)
	}
	if flags&ringFlagOverwrite != 0 {
		r.mem.enableOverwrite(r.mapping, true)
	}
	r.path = path
	return r, nil
}

// checkRingFile reads the identity block of a ring file and checks it
// against the file's length; it returns the data size and the ring's flags.
func checkRingFile(fd int) (int, uint32, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, 0, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return 0, 0, fmt.Errorf("not a regular file: %w", ErrCorrupt)
	}
	page := int64(sys.PageSize)
	if st.Size < 2*page {
		return 0, 0, fmt.Errorf("the file has %d bytes, fewer than the two position pages of a ring: %w", st.Size, ErrCorrupt)
	}
	var b [28]byte
	if _, err := unix.Pread(fd, b[:], identOffset); err != nil {
		return 0, 0, err
	}
	id := ident{
		magic:    binary.NativeEndian.Uint64(b[0:]),
		version:  binary.NativeEndian.Uint32(b[8:]),
		pageSize: binary.NativeEndian.Uint32(b[12:]),
		size:     binary.NativeEndian.Uint64(b[16:]),
		flags:    binary.NativeEndian.Uint32(b[24:]),
	}
	switch {
	case id.magic != ringMagic:
		return 0, 0, fmt.Errorf("not a ringo ring (magic %#x): %w", id.magic, ErrCorrupt)
	case id.version != ringVersion:
		return 0, 0, fmt.Errorf("ring format version %d, this ringo reads version %d: %w", id.version, ringVersion, ErrCorrupt)
	case id.flags&^ringFlagOverwrite != 0:
		return 0, 0, fmt.Errorf("ring flags %#x, this ringo knows %#x (made by a newer ringo?): %w", id.flags, ringFlagOverwrite, ErrCorrupt)
	case int64(id.pageSize) != page:
		return 0, 0, fmt.Errorf("made with %d-byte pages, this machine has %d: %w", id.pageSize, page, ErrCorrupt)
	}
	if err := ValidateSize(int64(id.size)); err != nil {
		return 0, 0, fmt.Errorf("recorded data size %d is invalid: %w", id.size, ErrCorrupt)
	}
	if want := int64(fileSize(int(id.size))); st.Size != want {
		return 0, 0, fmt.Errorf("the file has %d bytes, a ring of %d data bytes has %d (truncated or grown): %w", st.Size, id.size, want, ErrCorrupt)
	}
	return int(id.size), id.flags, nil
}

// Remove deletes the named ring. Processes that have it open keep using it
// until they close it; new Opens fail.
func Remove(name string, opts ...SharedOption) error {
	o := sharedOpts(opts)
	path, bellPath, err := o.ringPaths(name)
	if err != nil {
		return err
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("ringo: remove ring %q: %w", name, err)
	}
	os.Remove(bellPath)
	return nil
}

// Path returns the file of a shared ring, or "" for an in-process ring.
func (r *Ring) Path() string { return r.path }
