package main

import (
	"bytes"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ringo-bpf/ringo"
)

// Positions that no healthy ring has (written into the ring's file, as a
// process with access to it can): stat panicked ("makeslice: len out of
// range", "strings: negative Repeat count") when consumer_pos was past
// producer_pos or the ring held more than its size. stat, show, list,
// peek and dump must print something sensible, or fail with one line:
// never panic, never exit 2.
func TestInconsistentPositions(t *testing.T) {
	dir := t.TempDir()
	okWithin(t, dir, "create", "plain", "--size", "4K")
	okWithin(t, dir, "create", "over", "--size", "4K", "--overwrite")
	for _, name := range []string{"plain", "over"} {
		okWithin(t, dir, "produce", name, "--count", "3", "--size", "24")
	}
	type positions struct{ cons, prod, pend, over uint64 }
	cases := []struct {
		ring string
		pos  positions
	}{
		{"plain", positions{cons: 96 + 64, prod: 96, pend: 96}},        // consumer past producer
		{"plain", positions{cons: 0, prod: 3 * 4096, pend: 3 * 4096}},  // more than the size
		{"plain", positions{cons: 1 << 63, prod: 5, pend: 1<<64 - 1}},  // anything
		{"plain", positions{cons: math.MaxUint64, prod: 0, pend: 0}},   // unaligned, wrapped
		{"over", positions{cons: 0, prod: 96, pend: 96, over: 96 + 8}}, // overwrite past producer
		{"over", positions{cons: 0, prod: 1 << 40, pend: 1 << 40}},     // lapped by far, overwrite_pos behind
		{"over", positions{cons: 1 << 62, prod: 96, pend: 96, over: 1 << 63}},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s/%d/%d/%d/%d", c.ring, c.pos.cons, c.pos.prod, c.pos.pend, c.pos.over), func(t *testing.T) {
			b := mapRingFile(t, filepath.Join(dir, c.ring))
			put64(b, consumerPosAt, c.pos.cons)
			put64(b, producerPosAt, c.pos.prod)
			put64(b, pendingPosAt, c.pos.pend)
			if c.ring == "over" {
				put64(b, overwritePosAt, c.pos.over)
			}
			for _, args := range [][]string{{"stat", c.ring, "--interval", "20ms"}, {"show", c.ring}, {"list"}} {
				r := within(t, dir, args...)
				if r.code != 0 || strings.Contains(r.stderr, "panic") {
					t.Fatalf("ringo %s: exit %d, stderr %q", strings.Join(args, " "), r.code, r.stderr)
				}
				if !strings.Contains(r.stderr+r.stdout, "positions inconsistent") {
					t.Errorf("ringo %s does not say the positions are wrong: stderr %q, stdout %q", strings.Join(args, " "), r.stderr, r.stdout)
				}
			}
			line := okWithin(t, dir, "stat", c.ring, "--interval", "20ms")
			if !strings.Contains(line, "~") {
				t.Errorf("stat does not mark its estimate: %q", line)
			}
			type statJSON struct {
				AvailData uint64  `json:"avail_data"`
				Fill      float64 `json:"fill"`
				Estimated bool    `json:"estimated"`
			}
			s := decode[statJSON](t, okWithin(t, dir, "stat", c.ring, "--interval", "20ms", "--json"))
			if s.Fill < 0 || s.Fill > 1 || s.AvailData > 4096 || !s.Estimated {
				t.Errorf("stat --json: %+v", s)
			}
			show := decode[struct {
				AvailData uint64 `json:"avail_data"`
				Note      string `json:"note"`
			}](t, okWithin(t, dir, "show", c.ring, "--json"))
			if show.AvailData > 4096 || show.Note == "" {
				t.Errorf("show --json: %+v", show)
			}
			for _, args := range [][]string{{"peek", c.ring}, {"dump", c.ring}} {
				if r := within(t, dir, args...); r.code > 1 || r.code < 0 || strings.Contains(r.stderr, "panic") {
					t.Fatalf("ringo %s: exit %d, stderr %q", strings.Join(args, " "), r.code, r.stderr)
				}
			}
		})
	}
}

// The formatting of a measurement is total: whatever the positions and
// counts, a line with a fill between 0 and 100%.
func TestStatLineTotal(t *testing.T) {
	for _, p := range []ringo.Positions{
		{Consumer: 10, Producer: 0},
		{Consumer: 0, Producer: 1 << 63},
		{Consumer: 0, Producer: 4096 + 8},
		{Overwrite: 1 << 63, Producer: 8},
		{},
	} {
		s, _ := measure(time.Now(), 0, ringo.Traffic{Records: math.MaxUint64, Bytes: math.MaxUint64, Positions: p}, 4096)
		if s.Fill < 0 || s.Fill > 1 || s.AvailData > 4096 {
			t.Errorf("positions %+v: %+v", p, s)
		}
		checkStatText(t, s)
	}
	for _, fill := range []float64{math.NaN(), math.Inf(1), math.Inf(-1), -1, 2, 1e300} {
		checkStatText(t, statLine{Time: "x", Fill: fill})
	}
}

func checkStatText(t *testing.T, s statLine) {
	t.Helper()
	line := s.text()
	i, j := strings.IndexByte(line, '['), strings.IndexByte(line, ']')
	if i < 0 || j-i-1 != 20 {
		t.Errorf("statLine %+v: text %q has no 20-character bar", s, line)
	}
}

// FuzzRingFormatting: arbitrary positions and ring bytes, written into a
// shared ring's file, then the formatting functions and the commands that
// read the ring (in process): none panics, each exits 0 or 1, and the fill
// they print is within 0 and 100%.
func FuzzRingFormatting(f *testing.F) {
	dir := f.TempDir()
	f.Setenv("RINGO_DIR", dir)
	const size = 4096
	rings := map[bool][]byte{}
	for _, over := range []bool{false, true} {
		name := map[bool]string{false: "plain", true: "over"}[over]
		var opts []ringo.Option
		if over {
			opts = append(opts, ringo.WithOverwrite())
		}
		r, err := ringo.Create(name, size, opts...)
		if err != nil {
			f.Fatal(err)
		}
		r.Close()
		rings[over] = mapRingFile(f, filepath.Join(dir, name))
	}
	hdr := func(n uint32, pg uint32) []byte {
		b := make([]byte, 8)
		b[0], b[1], b[2], b[3] = byte(n), byte(n>>8), byte(n>>16), byte(n>>24)
		b[4], b[5], b[6], b[7] = byte(pg), byte(pg>>8), byte(pg>>16), byte(pg>>24)
		return b
	}
	f.Add(false, uint64(0), uint64(16), uint64(16), uint64(0), hdr(8, 3), uint16(0))
	f.Add(false, uint64(160), uint64(96), uint64(96), uint64(0), hdr(8, 3), uint16(0))
	f.Add(false, uint64(0), uint64(3*size), uint64(3*size), uint64(0), hdr(1<<31|8, 3), uint16(8))
	f.Add(true, uint64(0), uint64(96), uint64(96), uint64(104), hdr(4000, 3), uint16(4088))
	f.Add(true, uint64(0), uint64(1<<40), uint64(1<<40), uint64(8), hdr(1<<30|16, 3), uint16(0))
	f.Add(false, uint64(0), uint64(4088), uint64(0), uint64(0), hdr(4080, 3), uint16(0))
	f.Fuzz(func(t *testing.T, over bool, cons, prod, pend, owpos uint64, data []byte, at uint16) {
		b := rings[over]
		for i, c := range data {
			b[dataStart+(int(at)+i)%size] = c
		}
		put64(b, consumerPosAt, cons)
		put64(b, producerPosAt, prod)
		put64(b, pendingPosAt, pend)
		if over {
			put64(b, overwritePosAt, owpos)
		}
		p := ringo.Positions{Consumer: cons, Producer: prod, Pending: pend, Overwrite: owpos}
		s, note := measure(time.Now(), 1, ringo.Traffic{Records: cons, Bytes: prod, Positions: p}, size)
		if s.Fill < 0 || s.Fill > 1 || s.AvailData > size || (note != "") != s.Estimated {
			t.Fatalf("measure(%+v) = %+v, %q", p, s, note)
		}
		checkStatText(t, s)
		avail, _ := occupancy(p, size)
		var table bytes.Buffer
		if err := printRings(&table, []ringInfo{{Name: string(data), Path: string(data), Size: size, AvailData: avail, Note: note}}); err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(table.String(), "\n"); n != 2 {
			t.Fatalf("a table of one ring named %q has %d lines:\n%s", data, n, table.String())
		}
		name := map[bool]string{false: "plain", true: "over"}[over]
		for _, args := range [][]string{
			{"show", name}, {"show", name, "--json"}, {"peek", name, "-n", "100"}, {"peek", name, "--hex", "-n", "4"},
			{"stat", name, "--interval", "10ms"}, {"dump", name, "-n", "100", "--json"},
		} {
			var out, errOut bytes.Buffer
			code := run(&env{stdin: strings.NewReader(""), stdout: &out, stderr: &errOut}, args)
			if code != 0 && code != 1 {
				t.Fatalf("ringo %s: exit %d: %s", strings.Join(args, " "), code, errOut.String())
			}
			if args[0] == "show" && args[len(args)-1] == name && code == 0 {
				i := strings.Index(out.String(), "% full)")
				var pct float64
				if i < 0 || func() bool {
					_, err := fmt.Sscanf(out.String()[strings.LastIndexByte(out.String()[:i], '(')+1:i], "%g", &pct)
					return err != nil
				}() || pct < 0 || pct > 100 {
					t.Fatalf("show:\n%s", out.String())
				}
			}
		}
	})
}
