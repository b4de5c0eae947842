// Command ringo lists, inspects, reads and writes BPF ring buffers: kernel
// ringbuf and user_ringbuf maps, and ringo's shared rings. It is a thin
// layer over the github.com/ringo-bpf/ringo library, in the manner of
// bpftool: subcommands, --json on every one of them, exit status 0 on
// success, 1 on an error (one line on stderr), 2 on a usage error.
//
// Run "ringo help" for the commands and "ringo CMD --help" for each one's
// flags.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// command is one subcommand.
type command struct {
	name    string
	args    string // synopsis after the name
	summary string
	help    string // more lines for "ringo CMD --help"
	// define defines the command's flags on fs and returns the function
	// that runs it with their values and the positional arguments.
	define func(fs *flag.FlagSet) func(e *env, args []string) error
}

var commands []*command

func init() {
	commands = []*command{
		listCmd, showCmd, peekCmd, dumpCmd, createCmd, rmCmd, produceCmd, statCmd, snoopCmd, forwardCmd, benchCmd,
	}
}

// env is what a command runs with: its streams, so tests can run commands
// in process too.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
}

// usageError is a mistake on the command line: exit status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

func main() {
	os.Exit(run(&env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr}, os.Args[1:]))
}

// run runs the command line args and returns the exit status.
func run(e *env, args []string) int {
	if len(args) == 0 {
		printUsage(e.stderr)
		return 2
	}
	name := args[0]
	switch name {
	case "help", "-h", "-help", "--help":
		if len(args) > 1 {
			if c := lookup(args[1]); c != nil {
				c.usage(e.stdout)
				return 0
			}
			fmt.Fprintf(e.stderr, "ringo: no command %q (ringo help lists them)\n", args[1])
			return 2
		}
		printUsage(e.stdout)
		return 0
	}
	c := lookup(name)
	if c == nil {
		fmt.Fprintf(e.stderr, "ringo: no command %q (ringo help lists them)\n", name)
		return 2
	}
	pos, runner, err := c.parse(args[1:])
	if err == nil {
		err = runner(e, pos)
	}
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		c.usage(e.stdout)
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(e.stderr, "ringo %s: %s\nusage: ringo %s %s (ringo %s --help for more)\n", c.name, ue.msg, c.name, c.args, c.name)
		return 2
	default:
		fmt.Fprintf(e.stderr, "ringo %s: %s\n", c.name, message(err))
		return 1
	}
}

func lookup(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

func printUsage(w io.Writer) {
	fmt.Fprint(w, `ringo: BPF ring buffers, from the kernel and between processes.

usage: ringo COMMAND [ARGS] [FLAGS]

Commands:
`)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
A TARGET is one of
  id:N         a kernel ringbuf or user_ringbuf map by its ID (bpftool map list)
  /sys/fs/...  a map pinned in the BPF file system, by its path
  NAME         a shared ring, in $RINGO_DIR (default /dev/shm/ringo for root,
               /dev/shm/ringo-UID for other users). A name is 1 to 200 letters,
               digits, '.', '_' or '-', not starting with '.' or '-', not
               ending in .wake

Every command takes --json. Exit status: 0 success, 1 error, 2 usage error.
Kernel maps need root (or CAP_BPF and CAP_SYS_ADMIN).
Run "ringo CMD --help" for a command's flags.
`)
}

// usage prints the help of one command.
func (c *command) usage(w io.Writer) {
	fmt.Fprintf(w, "usage: ringo %s %s\n\n%s\n", c.name, c.args, c.summary)
	if c.help != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(c.help))
	}
	fs, _ := c.flags(io.Discard)
	has := false
	fs.VisitAll(func(*flag.Flag) { has = true })
	if has {
		fmt.Fprintf(w, "\nFlags:\n")
		fs.SetOutput(w)
		fs.PrintDefaults()
	}
}

// flags returns a fresh flag set with c's flags, and c's runner bound to
// them.
func (c *command) flags(out io.Writer) (*flag.FlagSet, func(*env, []string) error) {
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	fs.SetOutput(out)
	runner := c.define(fs)
	return fs, runner
}

// parse parses args for c, flags and positional arguments in any order
// (ringo show id:3 --json, ringo show --json id:3). It returns the
// positional arguments and c's runner. A bad flag is a usage error. After "--" everything is positional.
func (c *command) parse(args []string) ([]string, func(*env, []string) error, error) {
	var errs strings.Builder
	fs, runner := c.flags(&errs)
	var pos []string
	for {
		dashes := len(args) > 0 && args[0] == "--"
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, nil, err
			}
			return nil, nil, usageError{strings.TrimSpace(firstLine(errs.String()))}
		}
		rest := fs.Args()
		if dashes || (len(args) > len(rest) && args[len(args)-len(rest)-1] == "--") {
			return append(pos, rest...), runner, nil
		}
		if len(rest) == 0 {
			return pos, runner, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
