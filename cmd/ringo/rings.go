package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/ringo-bpf/ringo"
	"github.com/ringo-bpf/ringo/internal/bpfmap"
	"golang.org/x/sys/unix"
)

var listCmd = &command{
	name:    "list",
	args:    "[--json]",
	summary: "list every ring on the machine: kernel ringbuf and user_ringbuf maps, and shared rings",
	help: `Kernel maps are found by walking map IDs (as bpftool map list does) and their
pins under /sys/fs/bpf; shared rings in $RINGO_DIR (default /dev/shm/ringo,
or /dev/shm/ringo-UID for a user other than root). What list cannot see
(kernel maps without root, a directory of rings it may not read, a ring it
cannot open) it says on stderr, and shows the rest: that is not an error.
Names and paths with spaces, quotes or control characters are printed
quoted, with Go's escapes. An AVAIL marked ! comes from positions no healthy
ring has (a corrupt ring), clamped to empty or full; stderr says which.`,
	define: func(fs *flag.FlagSet) func(*env, []string) error {
		asJSON := jsonFlag(fs)
		return func(e *env, args []string) error {
			if len(args) != 0 {
				return usagef("list takes no arguments, got %q", args[0])
			}
			rings, err := listRings(e)
			if err != nil {
				return err
			}
			if *asJSON {
				return writeJSON(e.stdout, rings)
			}
			return printRings(e.stdout, rings)
		}
	},
}

// listRings describes every ring it can find.
func listRings(e *env) ([]ringInfo, error) {
	rings := []ringInfo{}
	maps, err := bpfmap.Rings()
	switch {
	case errors.Is(err, unix.EPERM):
		fmt.Fprintf(e.stderr, "ringo list: kernel maps not listed: %s\n", message(err))
	case err != nil:
		return nil, err
	}
	pins, _ := bpfmap.PinnedMaps(bpffs) // best effort: paths are extra
	for _, m := range maps {
		t, err := openTarget(fmt.Sprintf("id:%d", m.ID))
		if err != nil {
			continue // gone since it was listed
		}
		ri := t.info(false)
		ri.Path = pins[m.ID]
		t.Close()
		rings = append(rings, ri)
	}
	names, err := ringo.SharedRings()
	if err != nil {
		// (A directory this user may not read, say root's: its
		// rings are not this user's to see.)
		fmt.Fprintf(e.stderr, "ringo list: shared rings not listed: %s\n", message(err))
	}
	for _, name := range names {
		t, err := openTarget(name)
		if err != nil {
			fmt.Fprintf(e.stderr, "ringo list: skipping %s: %s\n", cell(name), message(err))
			continue
		}
		ri := t.info(false)
		t.Close()
		rings = append(rings, ri)
	}
	for _, r := range rings {
		if r.Note != "" {
			fmt.Fprintf(e.stderr, "ringo list: %s %s: %s\n", r.Type, cell(r.Name), r.Note)
		}
	}
	return rings, nil
}

func printRings(w io.Writer, rings []ringInfo) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTYPE\tNAME\tSIZE\tAVAIL\tCONSUMER\tPRODUCER\tPENDING\tPATH")
	for _, r := range rings {
		id := "-"
		if r.ID != 0 {
			id = fmt.Sprint(r.ID)
		}
		path := "-"
		if r.Path != "" {
			path = cell(r.Path)
		}
		avail := strconv.FormatUint(r.AvailData, 10)
		if r.Note != "" {
			avail += "!"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\n", id, r.Type, cell(r.Name), human(uint64(r.Size)),
			avail, r.ConsumerPos, r.ProducerPos, r.PendingPos, path)
	}
	return tw.Flush()
}

var showCmd = &command{
	name:    "show",
	args:    "TARGET [--json]",
	summary: "describe one ring: type, size, positions, and a shared ring's drop and abandon counters",
	define: func(fs *flag.FlagSet) func(*env, []string) error {
		asJSON := jsonFlag(fs)
		return func(e *env, args []string) error {
			t, err := oneTarget(args)
			if err != nil {
				return err
			}
			defer t.Close()
			ri := t.info(true)
			if *asJSON {
				return writeJSON(e.stdout, ri)
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 0, 1, ' ', 0)
			if ri.ID != 0 {
				fmt.Fprintf(tw, "id:\t%d\n", ri.ID)
			}
			fmt.Fprintf(tw, "name:\t%s\ntype:\t%s\nsize:\t%s (%d bytes)\n", cell(ri.Name), ri.Type, human(uint64(ri.Size)), ri.Size)
			if ri.Overwrite {
				fmt.Fprintf(tw, "mode:\toverwrite (overwrite_pos %d)\n", ri.OverwritePos)
			}
			fmt.Fprintf(tw, "avail_data:\t%d (%.1f%% full)\n", ri.AvailData, percent(ri.AvailData, ri.Size))
			fmt.Fprintf(tw, "consumer_pos:\t%d\nproducer_pos:\t%d\npending_pos:\t%d\n", ri.ConsumerPos, ri.ProducerPos, ri.PendingPos)
			if ri.Note != "" {
				fmt.Fprintf(tw, "note:\t%s\n", ri.Note)
			}
			if ri.Path != "" {
				fmt.Fprintf(tw, "path:\t%s\n", cell(ri.Path))
			}
			if ri.Dropped != nil {
				fmt.Fprintf(tw, "dropped:\t%d records (%s) refused while the ring was full\n", *ri.Dropped, human(*ri.DroppedBytes))
			} else if ri.Type == "ringbuf" {
				fmt.Fprintf(tw, "dropped:\tnot counted (no %s map: see bpf/ringo.h)\n", bpfmap.DropCounterName(ri.Name))
			}
			if ri.Abandoned != nil {
				fmt.Fprintf(tw, "abandoned:\t%d\n", *ri.Abandoned)
			}
			if ri.Overwritten != nil {
				fmt.Fprintf(tw, "overwritten:\t%d records (%s) before they were read\n", *ri.Overwritten, human(*ri.OverwrittenBytes))
			}
			return tw.Flush()
		}
	},
}

// oneTarget opens the single TARGET argument of a command.
func oneTarget(args []string) (*target, error) {
	switch len(args) {
	case 0:
		return nil, usagef("missing TARGET (id:N, a pinned path, or a shared ring's name)")
	case 1:
		return openTarget(args[0])
	}
	return nil, usagef("one TARGET only, got %d arguments", len(args))
}

var createCmd = &command{
	name:    "create",
	args:    "NAME --size BYTES [--overwrite] [--group] [--json]",
	summary: "create a shared ring in $RINGO_DIR (default /dev/shm/ringo)",
	help: `BYTES is the size of the data area: a power of two and a multiple of the page
size, written as 65536, 64K or 1M. With --overwrite the ring is a flight
recorder: when full, producers overwrite the oldest records instead of
failing, and dump gives the newest BYTES' worth, in order.`,
	define: func(fs *flag.FlagSet) func(*env, []string) error {
		var size sizeValue
		fs.Var(&size, "size", "data area size in bytes (4096, 64K, 1M; a power of two, page multiple)")
		group := fs.Bool("group", false, "let the file's group open the ring too (mode 0660)")
		overwrite := fs.Bool("overwrite", false, "when full, overwrite the oldest records instead of refusing new ones")
		asJSON := jsonFlag(fs)
		return func(e *env, args []string) error {
			if len(args) != 1 {
				return usagef("give one NAME")
			}
			if size.n == 0 {
				return usagef("missing --size BYTES")
			}
			var opts []ringo.Option
			if *group {
				opts = append(opts, ringo.WithGroupAccess())
			}
			if *overwrite {
				opts = append(opts, ringo.WithOverwrite())
			}
			r, err := ringo.Create(args[0], int(size.n), opts...)
			if err != nil {
				return err
			}
			t := (&target{spec: args[0], shared: r, path: r.Path()}).set("shared", r, r)
			defer t.Close()
			if *asJSON {
				return writeJSON(e.stdout, t.info(true))
			}
			_, err = fmt.Fprintf(e.stdout, "created %s (%s) at %s\n", args[0], human(uint64(r.Size())), r.Path())
			return err
		}
	},
}

var rmCmd = &command{
	name:    "rm",
	args:    "NAME [--json]",
	summary: "remove a shared ring (processes that have it open keep it until they close it)",
	help: `rm removes the ring NAME of $RINGO_DIR: its file and its wake-up pipe
NAME.wake. It removes nothing that is not a ring: another file, a link or a
directory of that name stays, and rm fails. Where the ring is gone and only
its pipe is left (a process died while removing it), rm NAME, or
rm NAME.wake, removes the pipe.`,
	define: func(fs *flag.FlagSet) func(*env, []string) error {
		asJSON := jsonFlag(fs)
		return func(e *env, args []string) error {
			if len(args) != 1 {
				return usagef("give one NAME")
			}
			name, dir := args[0], ringo.SharedDir()
			exists := func(n string) bool {
				_, err := os.Lstat(filepath.Join(dir, n))
				return err == nil
			}
			// NAME.wake is a ring's pipe: removed alone only when its
			// ring is gone (else "rm NAME" removes both).
			ring, pipeOnly := name, false
			if base, ok := strings.CutSuffix(name, ".wake"); ok && base != "" {
				if exists(base) {
					return fmt.Errorf("%s is the wake-up pipe of ring %s, which is still there: ringo rm %s removes the ring and its pipe", cell(name), cell(base), cell(base))
				}
				ring, pipeOnly = base, true
			} else if !exists(name) && exists(name+".wake") {
				pipeOnly = true
			}
			if err := ringo.Remove(ring); err != nil {
				return err
			}
			removed := ring
			if pipeOnly {
				removed = ring + ".wake"
			}
			if *asJSON {
				return writeJSON(e.stdout, map[string]string{"removed": removed})
			}
			var err error
			if pipeOnly {
				_, err = fmt.Fprintf(e.stdout, "removed %s, the wake-up pipe left behind by ring %s\n", removed, ring)
			} else {
				_, err = fmt.Fprintf(e.stdout, "removed %s\n", removed)
			}
			return err
		}
	},
}
