package ringo

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/ringo-bpf/ringo/internal/sys"
	"golang.org/x/sys/unix"
)

// maxNameLen is the longest ring name: with the suffixes of the pipe and of
// the temporary names Create uses, a file name stays under 255 bytes.
const maxNameLen = 200

// checkName is the one rule for the names of shared rings: 1 to 200 bytes of
// letters, digits, '.', '_' and '-', not starting with '.' or '-', not
// ending in ".wake" (the wake-up pipe beside each ring). So a name is a
// plain file name, a NATS subject token, a column of `ringo list`, and
// never a kernel map (id:N) or a path.
func checkName(name string) error {
	bad := func(why string) error {
		return fmt.Errorf("ringo: ring name %q %s: a name is 1 to %d letters, digits, '.', '_' or '-', not starting with '.' or '-', not ending in .wake: %w", name, why, maxNameLen, unix.EINVAL)
	}
	if name == "" {
		return bad("is empty")
	}
	if len(name) > maxNameLen {
		return bad(fmt.Sprintf("has %d bytes", len(name)))
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return bad(fmt.Sprintf("has %q at byte %d", c, i))
		}
	}
	if name[0] == '.' || name[0] == '-' {
		return bad(fmt.Sprintf("starts with %q", name[0]))
	}
	if strings.HasSuffix(name, wakeSuffix) {
		return bad("ends in .wake")
	}
	return nil
}

// wakeSuffix names the wake-up pipe beside a ring.
const wakeSuffix = ".wake"

// ringDir is the open directory of a set of named rings. Every file in it
// is opened relative to the descriptor, without following symbolic links,
// and checked on the open descriptor: a directory that another user can
// write, or that belongs to someone else, could hand this process a file
// of theirs under a ring's name (to read what it produces, or to feed it)
// or a link to a file of this process's user.
type ringDir struct {
	fd   int
	path string
	st   unix.Stat_t
}

// openRingDir opens and checks the directory of named rings, making it if
// create is set. A directory is trusted if it belongs to this user or to
// root, or is shared with a group this user is in (the group may write it,
// others may not): never one that every user may write.
func openRingDir(o options, create bool) (*ringDir, error) {
	made := false
	if create {
		mode := uint32(0o700)
		if o.group {
			mode = 0o770
		}
		if err := os.MkdirAll(filepath.Dir(o.dir), 0o755); err != nil {
			return nil, err
		}
		switch err := unix.Mkdir(o.dir, mode); err {
		case nil:
			made = true
		case unix.EEXIST:
		default:
			return nil, &os.PathError{Op: "mkdir", Path: o.dir, Err: err}
		}
	}
	fd, err := unix.Open(o.dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if err == unix.ELOOP || err == unix.ENOTDIR {
			return nil, fmt.Errorf("%s is not a directory (a symbolic link, or a file): rings live in a directory of their own", o.dir)
		}
		return nil, &os.PathError{Op: "open", Path: o.dir, Err: err}
	}
	d := &ringDir{fd: fd, path: o.dir}
	if made {
		// Set, not narrowed by the umask.
		mode := uint32(0o700)
		if o.group {
			mode = 0o770
		}
		unix.Fchmod(fd, mode)
	}
	if err := unix.Fstat(fd, &d.st); err != nil {
		d.close()
		return nil, err
	}
	if err := d.trusted(); err != nil {
		d.close()
		return nil, err
	}
	return d, nil
}

func (d *ringDir) close() { unix.Close(d.fd) }

// trusted checks the directory's owner and mode (see openRingDir).
func (d *ringDir) trusted() error {
	uid := uint32(os.Geteuid())
	mode := d.st.Mode & 0o7777
	if mode&0o002 != 0 {
		return fmt.Errorf("%s is writable by every user (mode %#o): anyone could replace its rings or read what is produced into them; use a directory only you (or your group) can write (chmod o-w, or set RINGO_DIR)", d.path, mode)
	}
	if d.st.Uid == uid || d.st.Uid == 0 {
		return nil
	}
	if mode&0o070 == 0o070 && inGroup(d.st.Gid) {
		return nil // shared with a group of ours by its owner
	}
	return fmt.Errorf("%s belongs to uid %d, not to you (uid %d) or root, and is not shared with a group of yours: another user may have made it to read or replace your rings; remove it, or set RINGO_DIR to a directory of yours", d.path, d.st.Uid, uid)
}

// inGroup reports whether this process is in group gid.
func inGroup(gid uint32) bool {
	if uint32(os.Getegid()) == gid {
		return true
	}
	groups, _ := unix.Getgroups()
	for _, g := range groups {
		if uint32(g) == gid {
			return true
		}
	}
	return false
}

// openFile opens name in the directory without following a symbolic link,
// and checks on the descriptor that it is a file of the kind want
// (unix.S_IFREG or unix.S_IFIFO) belonging to a user the directory trusts:
// this user, root, the directory's owner, or, in a directory its group may
// write, a member of that group (the file has the directory's group).
func (d *ringDir) openFile(name string, want uint32) (int, *unix.Stat_t, error) {
	path := filepath.Join(d.path, name)
	// O_NONBLOCK: opening a pipe or a device never waits.
	fd, err := unix.Openat(d.fd, name, unix.O_RDWR|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		if err == unix.ELOOP {
			return -1, nil, fmt.Errorf("%s is a symbolic link: a ring's files are never links, so it is not opened", path)
		}
		return -1, nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, nil, err
	}
	if st.Mode&unix.S_IFMT != want {
		unix.Close(fd)
		kind := "a regular file"
		if want == unix.S_IFIFO {
			kind = "a named pipe"
		}
		return -1, nil, fmt.Errorf("%s is not %s (mode %#o): %w", path, kind, st.Mode, ErrCorrupt)
	}
	uid := uint32(os.Geteuid())
	owner := st.Uid == uid || st.Uid == 0 || st.Uid == d.st.Uid ||
		d.st.Mode&0o020 != 0 && st.Gid == d.st.Gid
	if !owner {
		unix.Close(fd)
		return -1, nil, fmt.Errorf("%s belongs to uid %d, whom its directory does not trust: another user put it there; remove it", path, st.Uid)
	}
	return fd, &st, nil
}

// Create creates a ring named name with a data area of size bytes, in
// shared memory that any process may Open by name. Producers in every
// process use the same producer API; one Reader, in any process, consumes
// it. The ring exists until Remove. It fails if a ring of that name
// exists already, and if the file system lacks the room (its memory is
// allocated at once, so that no producer meets a full file system later).
func Create(name string, size int, opts ...Option) (*Ring, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if err := validateSize(int64(size)); err != nil {
		return nil, err
	}
	o, err := gather("Create", optDir|optGroup|optOverwrite, opts)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*Ring, error) {
		return nil, fmt.Errorf("ringo: create ring %q: %w", name, err)
	}
	d, err := openRingDir(o, true)
	if err != nil {
		return fail(err)
	}
	defer d.close()
	// Build the ring and its pipe under temporary names and link them
	// into place once whole, so that no process ever opens a ring half
	// made. (Temporary names start with '.', which no ring name does.)
	tmp := fmt.Sprintf(".%s.tmp.%d.%d", name, os.Getpid(), rand.Uint32())
	fd, err := unix.Openat(d.fd, tmp, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, o.mode())
	if err != nil {
		return fail(&os.PathError{Op: "create", Path: filepath.Join(d.path, tmp), Err: err})
	}
	defer unix.Unlinkat(d.fd, tmp, 0)
	unix.Fchmod(fd, o.mode()) // not narrowed by the umask
	if err := allocate(fd, fileSize(size), d); err != nil {
		closeFD(fd)
		return fail(err)
	}
	bell, wake, err := makeWakePipe(d, tmp, o.mode(), -1)
	if err != nil {
		closeFD(fd)
		return fail(err)
	}
	defer unix.Unlinkat(d.fd, tmp+wakeSuffix, 0)
	r, err := mapShared(fd, size, name, bell)
	if err != nil {
		bell.Close()
		closeFD(fd)
		return fail(err)
	}
	id := ident{magic: ringMagic, version: ringVersion, pageSize: uint32(sys.PageSize), size: uint64(size), nonce: newNonce(), wake: wake}
	if o.overwrite {
		id.flags |= ringFlagOverwrite
		r.mem.enableOverwrite(r.mapping, true)
	}
	*identity(r.mapping) = id
	// The pipe first: while the ring's name does not exist, nobody opens
	// its pipe. An orphan pipe (its ring removed by a process that died
	// half-way) is replaced; a live ring's is not.
	if err := d.link(tmp+wakeSuffix, name+wakeSuffix, name); err != nil {
		r.Close()
		return fail(err)
	}
	if err := unix.Linkat(d.fd, tmp, d.fd, name, 0); err != nil {
		d.unlinkIf(name+wakeSuffix, wake)
		r.Close()
		if err == unix.EEXIST {
			return fail(fmt.Errorf("a ring of that name exists in %s: open it, or remove it first: %w", d.path, fs.ErrExist))
		}
		return fail(err)
	}
	r.path = filepath.Join(d.path, name)
	return r, nil
}

// allocate sizes the new ring file fd and allocates its memory, failing
// with the file system's free space named if it lacks the room.
func allocate(fd, length int, d *ringDir) error {
	if err := unix.Ftruncate(fd, int64(length)); err != nil {
		return fmt.Errorf("size its file: %w", err)
	}
	err := unix.Fallocate(fd, 0, 0, int64(length))
	if err == unix.ENOSPC {
		var sfs unix.Statfs_t
		free := "too little"
		if unix.Fstatfs(d.fd, &sfs) == nil {
			free = fmt.Sprintf("%d KiB", uint64(sfs.Bavail)*uint64(sfs.Bsize)/1024)
		}
		return fmt.Errorf("%s has %s free, the ring needs %d KiB: make it smaller, or free room there (or set RINGO_DIR): %w", d.path, free, length/1024, err)
	}
	if err != nil && err != unix.EOPNOTSUPP {
		return fmt.Errorf("allocate its memory: %w", err)
	}
	return nil
}

// link links the file old of the directory in as new, the wake-up pipe of
// ring: a pipe that is there already is replaced if ring does not exist
// (an orphan), else the link fails.
func (d *ringDir) link(old, new, ring string) error {
	for try := 0; ; try++ {
		err := unix.Linkat(d.fd, old, d.fd, new, 0)
		if err != unix.EEXIST || try > 0 {
			return err
		}
		var st unix.Stat_t
		if unix.Fstatat(d.fd, ring, &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
			return fmt.Errorf("a ring of that name exists in %s: open it, or remove it first: %w", d.path, fs.ErrExist)
		}
		if unix.Fstatat(d.fd, new, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT != unix.S_IFIFO {
			return fmt.Errorf("%s is in the way of the ring's wake-up pipe and is not one: remove it", filepath.Join(d.path, new))
		}
		unix.Unlinkat(d.fd, new, 0)
	}
}

// unlinkIf removes name if it is still the pipe with inode ino.
func (d *ringDir) unlinkIf(name string, ino uint64) {
	var st unix.Stat_t
	if unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Ino == ino {
		unix.Unlinkat(d.fd, name, 0)
	}
}

// makeWakePipe makes the named pipe base+".wake" in the directory with the
// given mode (and group gid, unless -1), opens it, and returns it with its
// inode number.
func makeWakePipe(d *ringDir, base string, mode uint32, gid int) (*sys.FIFO, uint64, error) {
	name := base + wakeSuffix
	if err := unix.Mkfifoat(d.fd, name, mode); err != nil {
		return nil, 0, &os.PathError{Op: "mkfifo", Path: filepath.Join(d.path, name), Err: err}
	}
	fd, st, err := d.openFile(name, unix.S_IFIFO)
	if err != nil {
		unix.Unlinkat(d.fd, name, 0)
		return nil, 0, err
	}
	unix.Fchmod(fd, mode) // not narrowed by the umask
	if gid >= 0 {
		unix.Fchown(fd, -1, gid)
	}
	return sys.NewFIFO(fd), st.Ino, nil
}

// mapShared maps the ring file fd of a shared ring and registers the new
// handle (liveness.go).
func mapShared(fd, size int, name string, bell doorbell) (*Ring, error) {
	r, err := mapRing(fd, size, name, bell)
	if err != nil {
		return nil, err
	}
	if err := r.mem.trackOwners(r.mapping, fd); err != nil {
		r.Close()
		return nil, err
	}
	r.guarded = true
	return r, nil
}

// Open opens the named ring that Create made, in this or another process.
// It refuses a file that is not a whole ringo ring of this version, with an
// error that says what is wrong and never shows the file's bytes.
func Open(name string, opts ...Option) (*Ring, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	o, err := gather("Open", optDir, opts)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*Ring, error) {
		return nil, fmt.Errorf("ringo: open ring %q: %w", name, err)
	}
	d, err := openRingDir(o, false)
	if err != nil {
		return fail(err)
	}
	defer d.close()
	fd, st, err := d.openFile(name, unix.S_IFREG)
	if err != nil {
		return fail(err)
	}
	size, flags, err := checkRingFile(fd, st)
	if err != nil {
		closeFD(fd)
		return fail(fmt.Errorf("%s: %w", filepath.Join(d.path, name), err))
	}
	r, err := mapShared(fd, size, name, nil)
	if err != nil {
		closeFD(fd)
		return fail(err)
	}
	// The file may have been truncated between the check and the mapping
	// (touching a page past its end would then fault).
	var now unix.Stat_t
	if err := unix.Fstat(fd, &now); err != nil || now.Size != st.Size {
		r.Close()
		return fail(fmt.Errorf("the file changed size while it was opened (to %d bytes): %w", now.Size, ErrCorrupt))
	}
	if r.bell, err = r.openWakePipe(d, st); err != nil {
		r.bell = nil
		r.Close()
		return fail(err)
	}
	if flags&ringFlagOverwrite != 0 {
		r.mem.enableOverwrite(r.mapping, true)
	}
	r.path = filepath.Join(d.path, name)
	return r, nil
}

// openWakePipe opens the ring's wake-up pipe, checking that it is the one
// the ring records (its inode number). One that is missing or was replaced
// is made anew (with the ring file's mode and group, st) only if no
// consumer runs: a running consumer listens on the old one, and producers
// that signal another pipe would never wake it.
func (r *Ring) openWakePipe(d *ringDir, st *unix.Stat_t) (doorbell, error) {
	name := r.name + wakeSuffix
	id := identity(r.mapping)
	fd, pst, err := d.openFile(name, unix.S_IFIFO)
	if err == nil && pst.Ino == id.wake {
		return sys.NewFIFO(fd), nil
	}
	what := "was replaced"
	if err == nil {
		closeFD(fd)
	} else if errors.Is(err, fs.ErrNotExist) {
		what = "is missing"
	} else if !errors.Is(err, ErrCorrupt) {
		return nil, err
	}
	// Under the reservation lock, so that two openers do not both make
	// one; then look again: another opener may have made it meanwhile.
	if err := r.mem.lock(nil); err != nil {
		return nil, err
	}
	defer r.mem.unlock()
	if fd, pst, err := d.openFile(name, unix.S_IFIFO); err == nil {
		if pst.Ino == id.wake {
			return sys.NewFIFO(fd), nil
		}
		closeFD(fd)
	}
	if c := r.mem.consumerOwner.Load(); c != 0 && r.mem.alive(c) {
		return nil, fmt.Errorf("its wake-up pipe %s %s while process %d consumes the ring: producers can no longer wake that consumer; restart it, or remove and re-create the ring", filepath.Join(d.path, name), what, r.mem.pidOf(c))
	}
	tmp := fmt.Sprintf(".%s.tmp.%d.%d", r.name, os.Getpid(), rand.Uint32())
	bell, ino, err := makeWakePipe(d, tmp, uint32(st.Mode&0o777), int(st.Gid))
	if err != nil {
		return nil, fmt.Errorf("make its wake-up pipe anew: %w", err)
	}
	if err := unix.Renameat(d.fd, tmp+wakeSuffix, d.fd, name); err != nil {
		bell.Close()
		unix.Unlinkat(d.fd, tmp+wakeSuffix, 0)
		return nil, fmt.Errorf("make its wake-up pipe anew: %w", err)
	}
	id.wake = ino
	return bell, nil
}

// checkRingFile reads the identity block of a ring file and checks it
// against the file's length (st); it returns the data size and the ring's
// flags. It never reports the bytes it read: the file may be anything.
func checkRingFile(fd int, st *unix.Stat_t) (int, uint32, error) {
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
		return 0, 0, fmt.Errorf("not a ringo ring (no ringo identity block): %w", ErrCorrupt)
	case id.version != ringVersion:
		return 0, 0, fmt.Errorf("ring format version %d, this ringo reads version %d (remove the ring and create it again): %w", id.version, ringVersion, ErrCorrupt)
	case id.flags&^ringFlagOverwrite != 0:
		return 0, 0, fmt.Errorf("ring flags %#x, this ringo knows %#x (made by a newer ringo?): %w", id.flags, ringFlagOverwrite, ErrCorrupt)
	case int64(id.pageSize) != page:
		return 0, 0, fmt.Errorf("made with %d-byte pages, this machine has %d: %w", id.pageSize, page, ErrCorrupt)
	}
	if err := validateSize(int64(id.size)); err != nil {
		return 0, 0, fmt.Errorf("recorded data size %d is invalid: %w", id.size, ErrCorrupt)
	}
	if want := int64(fileSize(int(id.size))); st.Size != want {
		return 0, 0, fmt.Errorf("the file has %d bytes, a ring of %d data bytes has %d (truncated or grown): %w", st.Size, id.size, want, ErrCorrupt)
	}
	return int(id.size), id.flags, nil
}

// Remove deletes the named ring: its file and its wake-up pipe, and only if
// the file is a ring (or, where the ring is gone, an orphan pipe). Processes
// that have it open keep using it until they close it; new Opens fail.
func Remove(name string, opts ...Option) error {
	if err := checkName(name); err != nil {
		return err
	}
	o, err := gather("Remove", optDir, opts)
	if err != nil {
		return err
	}
	fail := func(err error) error { return fmt.Errorf("ringo: remove ring %q: %w", name, err) }
	d, err := openRingDir(o, false)
	if err != nil {
		return fail(err)
	}
	defer d.close()
	fd, st, err := d.openFile(name, unix.S_IFREG)
	if errors.Is(err, fs.ErrNotExist) {
		// No ring: an orphan pipe left by a process that died in
		// Remove goes, anything else stays.
		var pst unix.Stat_t
		if unix.Fstatat(d.fd, name+wakeSuffix, &pst, unix.AT_SYMLINK_NOFOLLOW) == nil && pst.Mode&unix.S_IFMT == unix.S_IFIFO {
			if err := unix.Unlinkat(d.fd, name+wakeSuffix, 0); err != nil {
				return fail(err)
			}
			return nil
		}
		return fail(err)
	}
	if err != nil {
		return fail(err)
	}
	defer closeFD(fd)
	// A ring of any version goes; any other file stays.
	var b [16]byte
	if st.Size < identOffset+int64(len(b)) {
		return fail(fmt.Errorf("%s is not removed: it is not a ringo ring (%d bytes): %w", filepath.Join(d.path, name), st.Size, ErrCorrupt))
	}
	if _, err := unix.Pread(fd, b[:8], identOffset); err != nil || binary.NativeEndian.Uint64(b[:]) != ringMagic {
		return fail(fmt.Errorf("%s is not removed: it is not a ringo ring (no ringo identity block): %w", filepath.Join(d.path, name), ErrCorrupt))
	}
	unix.Pread(fd, b[8:], identOffset+wakeOffset)
	if err := unix.Unlinkat(d.fd, name, 0); err != nil {
		return fail(err)
	}
	d.unlinkIf(name+wakeSuffix, binary.NativeEndian.Uint64(b[8:]))
	return nil
}

// Path returns the file of a shared ring, or "" for an in-process ring.
func (r *Ring) Path() string { return r.path }

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
