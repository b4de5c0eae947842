package main

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/ringo-bpf/ringo"
)

// jsonFlag defines --json (and -j, as bpftool has it).
func jsonFlag(fs *flag.FlagSet) *bool {
	v := new(bool)
	fs.BoolVar(v, "json", false, "print JSON (field names are stable)")
	fs.BoolVar(v, "j", false, "short for --json")
	return v
}

// writeJSON prints v as one line of JSON.
func writeJSON(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// sizeValue is a flag holding a byte count written as 4096, 64K, 1M or 1G
// (powers of 1024).
type sizeValue struct{ n int64 }

func (s *sizeValue) String() string { return strconv.FormatInt(s.n, 10) }

func (s *sizeValue) Set(v string) error {
	n, err := parseSize(v)
	if err != nil {
		return err
	}
	s.n = n
	return nil
}

func parseSize(v string) (int64, error) {
	mult := int64(1)
	t := strings.TrimSuffix(strings.ToUpper(v), "B")
	t = strings.TrimSuffix(t, "I")
	switch {
	case strings.HasSuffix(t, "K"):
		mult, t = 1<<10, t[:len(t)-1]
	case strings.HasSuffix(t, "M"):
		mult, t = 1<<20, t[:len(t)-1]
	case strings.HasSuffix(t, "G"):
		mult, t = 1<<30, t[:len(t)-1]
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<40)/mult {
		return 0, fmt.Errorf("%q is not a byte count (like 4096, 64K, 1M)", v)
	}
	return n * mult, nil
}

// human writes n bytes for people: 64 KiB, 1 MiB, 4000 B.
func human(n uint64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

// recordFormat is how peek and dump print records.
type recordFormat int

const (
	formatText recordFormat = iota // one line: position, length, a preview
	formatHex                      // a header line, then hexdump -C lines
	formatJSON                     // one object per line: pos, len, data
	formatRaw                      // u32 little-endian length, then the payload
)

// formatFlags defines --json, --hex and --raw and returns a function that
// tells which one was chosen (a usage error if several were).
func formatFlags(fs *flag.FlagSet) func() (recordFormat, error) {
	j := jsonFlag(fs)
	h := fs.Bool("hex", false, "print each record as a hex dump (like hexdump -C)")
	r := fs.Bool("raw", false, "write each payload as a 4-byte little-endian length and the bytes, for programs")
	return func() (recordFormat, error) {
		n, f := 0, formatText
		if *j {
			n, f = n+1, formatJSON
		}
		if *h {
			n, f = n+1, formatHex
		}
		if *r {
			n, f = n+1, formatRaw
		}
		if n > 1 {
			return 0, usagef("choose one of --json, --hex and --raw")
		}
		return f, nil
	}
}

// recordJSON is a record in --json output: a contract.
type recordJSON struct {
	Pos  uint64 `json:"pos"`
	Len  int    `json:"len"`
	Data string `json:"data"`
}

// printRecord writes rec in format f.
func printRecord(w io.Writer, f recordFormat, rec ringo.Record) error {
	var err error
	switch f {
	case formatJSON:
		err = writeJSON(w, recordJSON{Pos: rec.Pos, Len: len(rec.Data), Data: hex.EncodeToString(rec.Data)})
	case formatHex:
		if _, err = fmt.Fprintf(w, "pos %d len %d\n", rec.Pos, len(rec.Data)); err == nil {
			_, err = io.WriteString(w, hex.Dump(rec.Data))
		}
	case formatRaw:
		var n [4]byte
		binary.LittleEndian.PutUint32(n[:], uint32(len(rec.Data)))
		if _, err = w.Write(n[:]); err == nil {
			_, err = w.Write(rec.Data)
		}
	default:
		_, err = fmt.Fprintf(w, "pos %-10d len %-6d %s\n", rec.Pos, len(rec.Data), preview(rec.Data))
	}
	return err
}

// preview shows the first bytes of data in hex and as text.
func preview(data []byte) string {
	const max = 16
	b := data
	more := ""
	if len(b) > max {
		b, more = b[:max], " ..."
	}
	text := make([]byte, len(b))
	for i, c := range b {
		if c < 32 || c > 126 {
			c = '.'
		}
		text[i] = c
	}
	return fmt.Sprintf("%-47s |%s|%s", spaced(hex.EncodeToString(b)), text, more)
}

// spaced puts a space between the bytes of a hex string.
func spaced(h string) string {
	var sb strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			sb.WriteByte(' ')
		}
		sb.WriteString(h[i : i+2])
	}
	return sb.String()
}

// humanRate writes a byte rate for people: 512 B, 12.5 KiB, 3.1 MiB.
func humanRate(v float64) string {
	switch {
	case v >= 1<<30:
		return fmt.Sprintf("%.1f GiB", v/(1<<30))
	case v >= 1<<20:
		return fmt.Sprintf("%.1f MiB", v/(1<<20))
	case v >= 1<<10:
		return fmt.Sprintf("%.1f KiB", v/(1<<10))
	}
	return fmt.Sprintf("%.0f B", v)
}

// message is err as one line for the command's "ringo CMD: " prefix: the
// library's "ringo: " prefixes, at the start and after each ": " where
// errors wrap one another, go (the line has the command's once), and line
// breaks become spaces.
func message(err error) string {
	msg := strings.ReplaceAll(err.Error(), "\n", " ")
	msg = strings.TrimPrefix(msg, "ringo: ")
	return strings.ReplaceAll(msg, ": ringo: ", ": ")
}

// cell is s as a column of a table, or a value in a line of text: as it
// is if it is printable and has no space, quotes or backslash, else quoted
// with Go's escapes (a pinned path may hold a tab, a newline or a
// terminal's escape sequence, which would break the table or the
// terminal).
func cell(s string) string {
	if s == "" {
		return `""`
	}
	for _, r := range s {
		if r == utf8.RuneError || !unicode.IsGraphic(r) || unicode.IsSpace(r) || r == '"' || r == '\\' {
			return strconv.Quote(s)
		}
	}
	return s
}

// occupancy is what a ring holds by its positions p: the bytes of records
// neither consumed nor overwritten. Positions that no healthy ring has
// (the consumer past the producer, or the producer more than the size
// ahead: a corrupt ring, or memory that someone else writes) are clamped
// to an empty or a full ring, and note says what was wrong ("" if
// nothing was).
func occupancy(p ringo.Positions, size int) (avail uint64, note string) {
	from, what := p.Consumer, "consumer_pos"
	// (Positions wrap at 2^64: they are compared by signed distance. An
	// overwrite_pos of 0 is a ring that never overwrote, or none that
	// overwrites.)
	if p.Overwrite != 0 && int64(p.Overwrite-from) > 0 {
		from, what = p.Overwrite, "overwrite_pos"
	}
	d := int64(p.Producer - from)
	switch {
	case d < 0:
		return 0, fmt.Sprintf("positions inconsistent: %s %d is past producer_pos %d (a corrupt ring): taken as empty", what, from, p.Producer)
	case size > 0 && uint64(d) > uint64(size):
		return uint64(size), fmt.Sprintf("positions inconsistent: producer_pos %d is %d bytes past %s %d in a %d-byte ring (a corrupt ring): taken as full", p.Producer, d, what, from, size)
	case (from|p.Producer)&7 != 0:
		return uint64(d), fmt.Sprintf("positions inconsistent: %s %d or producer_pos %d is not a multiple of 8 (a corrupt ring)", what, from, p.Producer)
	}
	return uint64(d), ""
}

// percent is part of whole in percent, 0 for an empty whole.
func percent(part uint64, whole int) float64 {
	if whole <= 0 {
		return 0
	}
	return 100 * float64(part) / float64(whole)
}
