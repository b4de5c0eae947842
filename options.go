package ringo

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// Option configures a ring. New, Create, Open, Remove, the sets of rings
// (NewShards, CreateShards, OpenShards, RemoveShards) and CreateKernelRing
// take the same options, and refuse one that has no meaning for them with
// an error that says so.
type Option func(*options)

type options struct {
	given     uint // which options were given: opt... bits
	name      string
	dir       string
	overwrite bool
	single    bool
	group     bool
}

// The options, as bits of options.given.
const (
	optName = 1 << iota
	optOverwrite
	optSingle
	optDir
	optGroup
)

var optionNames = [...]string{"WithName", "WithOverwrite", "WithSingleProducer", "WithDir", "WithGroupAccess"}

// WithName names an in-process ring (New), for records, errors and
// /proc/PID/fd listings. A shared ring's name is Create's argument.
func WithName(name string) Option {
	return func(o *options) { o.given |= optName; o.name = name }
}

// WithOverwrite makes New, Create or CreateKernelRing make a ring in
// overwrite mode (overwrite.go). Every process that opens a shared ring
// follows the mode its file records.
func WithOverwrite() Option {
	return func(o *options) { o.given |= optOverwrite; o.overwrite = true }
}

// WithSingleProducer promises that at most one goroutine at a time
// reserves in an in-process ring (calls Output or Reserve); Commit and
// Discard may come from any goroutine. (A user ring takes it too, with
// the promise that one goroutine at a time reserves and commits: see
// OpenUserRing.) Handing the producer's part to
// another goroutine needs the usual synchronisation (a channel, a mutex)
// between the two. Reservations then take no lock: one locked instruction
// less per record, the last one of Output, which makes one producer
// goroutine 1.3-2x faster (BenchmarkTransfer: ring-single against ring).
// The ring's memory, positions and headers are those of any other ring. Two
// goroutines reserving at once break the promise; ringo panics when it
// notices (not always: like Go's maps, it checks without a lock). Where the
// system lacks membarrier(2), which Close needs for this, the option does
// nothing. A shared ring's producers may be in any process, so Create and
// Open refuse it.
func WithSingleProducer() Option {
	return func(o *options) { o.given |= optSingle; o.single = true }
}

// WithDir places named rings in dir instead of RINGO_DIR or the default
// (/dev/shm/ringo for root, /dev/shm/ringo-UID for other users).
func WithDir(dir string) Option {
	return func(o *options) { o.given |= optDir; o.dir = dir }
}

// WithGroupAccess lets the file's group open a ring Create makes too (mode
// 0660 rather than 0600, and a directory Create makes is 0770 rather than
// 0700).
func WithGroupAccess() Option {
	return func(o *options) { o.given |= optGroup; o.group = true }
}

// gather applies opts for the function named what, which takes the
// options in allowed, and fills in the directory of shared rings.
func gather(what string, allowed uint, opts []Option) (options, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if extra := o.given &^ allowed; extra != 0 {
		for i, name := range optionNames {
			if extra&(1<<i) != 0 {
				return o, fmt.Errorf("ringo: %s does not take %s: %s: %w", what, name, optionReasons[i], unix.EINVAL)
			}
		}
	}
	if o.dir == "" {
		o.dir = os.Getenv("RINGO_DIR")
	}
	if o.dir == "" {
		o.dir = defaultDir
		if uid := os.Geteuid(); uid != 0 {
			o.dir += "-" + strconv.Itoa(uid)
		}
	}
	return o, nil
}

var optionReasons = [...]string{
	"a shared ring's name is Create's argument, a kernel map's CreateKernelRing's",
	"a ring's mode is chosen when it is made (New, Create, CreateKernelRing)",
	"a shared ring's producers may be in any process; it is for in-process rings (New) and user rings (OpenUserRing, CreateUserRing)",
	"only shared rings live in a directory (Create, Open, Remove)",
	"only Create makes files, and sets their modes",
}

// defaultDir is where root's named rings live unless RINGO_DIR or WithDir
// says otherwise: a directory in the shared-memory file system, so a ring's
// memory is RAM, shared by every process that maps it. Other users' rings
// live in defaultDir-UID (/dev/shm/ringo-1000), a directory of their own.
const defaultDir = "/dev/shm/ringo"

// mode is the mode of the files of a ring Create makes.
func (o options) mode() uint32 {
	if o.group {
		return 0o660
	}
	return 0o600
}
