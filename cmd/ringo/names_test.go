package main

import (
	"encoding/json"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
)

// Ring names follow one rule, and the command's messages say it: create
// id:2742 was accepted (and show id:2742 then opened kernel map 2742), a
// name with a newline broke list's table, a name over about 245 bytes
// failed on a temporary file's name.
func TestRingNames(t *testing.T) {
	dir := t.TempDir()
	const rule = "a name is 1 to 200 letters, digits, '.', '_' or '-', not starting with '.' or '-', not ending in .wake"
	for _, name := range []string{"id:2742", "a\nb", "a\tb", "a b", "../x", ".hidden", "-flag", "r.wake", strings.Repeat("n", 201), strings.Repeat("é", 100)} {
		failsWithin(t, dir, 1, rule, "create", "--size", "4K", "--", name)
		if !strings.HasPrefix(name, "id:") { // (a TARGET id:N is a kernel map)
			failsWithin(t, dir, 1, rule, "show", "--", strings.ReplaceAll(name, "/", "_"))
		}
	}
	failsWithin(t, dir, 1, "has 201 bytes", "create", strings.Repeat("n", 201), "--size", "4K")
	long := strings.Repeat("n", 200)
	okWithin(t, dir, "create", long, "--size", "4K")
	okWithin(t, dir, "produce", long, "--count", "1", "--size", "8")
	okWithin(t, dir, "rm", long)
	if h := okWithin(t, dir, "help"); !strings.Contains(h, "A name is 1 to 200 letters") {
		t.Errorf("ringo help does not say what a name is:\n%s", h)
	}
}

// list's table holds one line per ring whatever the pinned paths hold
// (tabs, newlines, escape sequences): such paths are quoted.
func TestListOddPaths(t *testing.T) {
	requireKernel(t)
	pins := bpffsDir(t)
	ring, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.RingBuf, MaxEntries: 4096, Name: "cmd_odd_path"})
	if err != nil {
		t.Fatal(err)
	}
	defer ring.Close()
	pin := filepath.Join(pins, "odd\tpath\nnext row \x1b[31m\"q\"")
	if err := ring.Pin(pin); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	out := okWithin(t, dir, "list")
	var list []ringJSON
	if err := json.Unmarshal([]byte(okWithin(t, dir, "list", "--json")), &list); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range list {
		found = found || r.Path == pin
	}
	if !found {
		t.Fatalf("list --json does not have the pin %q: %+v", pin, list)
	}
	// Other packages' tests create and remove rings while this one runs,
	// so the table is not compared with the JSON list of another moment:
	// every line after the header is a row of its own, starting with an ID.
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	rows := 0
	for _, line := range lines[1:] {
		id, _, _ := strings.Cut(line, " ")
		if _, err := strconv.ParseUint(id, 10, 32); err != nil {
			t.Errorf("list printed a line that is not a ring's row: %q\n%s", line, out)
		}
		if strings.Contains(line, "cmd_odd_path") {
			rows++
		}
	}
	if rows != 1 {
		t.Errorf("list printed %d rows for the ring cmd_odd_path:\n%s", rows, out)
	}
	if !strings.Contains(out, strconv.Quote(pin)) || strings.Contains(out, "\x1b") {
		t.Errorf("list does not quote the path %q:\n%s", pin, out)
	}
	if show := okWithin(t, dir, "show", pin); !strings.Contains(show, "path:         "+strconv.Quote(pin)+"\n") {
		t.Errorf("show does not quote the path:\n%s", show)
	}
}
