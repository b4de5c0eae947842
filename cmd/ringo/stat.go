package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/ringo-bpf/ringo"
)

var statCmd = &command{
	name:    "stat",
	args:    "TARGET [--watch] [--interval D] [--json]",
	summary: "measure a ring's traffic: records/s, bytes/s, fill level, drops",
	help: `stat counts what producers publish by walking the record headers between two
looks at the producer position; it consumes nothing. It prints one line
after one interval, or with --watch one line per interval until Ctrl-C.
Rates marked ~ are estimates: producers overwrote headers before stat saw
them, or the ring's positions are ones no healthy ring has (a corrupt ring,
said on stderr), whose fill is then clamped to 0 or 100%. Drops (reservations refused while the ring was full) are counted for
shared rings, and for kernel rings whose BPF programs count them with
bpf/ringo.h's RINGO_DROP_COUNTER (ringo snoop's do); otherwise "drops -".

--json prints one object per line: time, records_per_sec, bytes_per_sec,
avail_data, size, fill (0..1), estimated, and where drops are counted
dropped (total) and drops_per_sec, and for shared rings abandoned (total).`,
	define: func(fs *flag.FlagSet) func(*env, []string) error {
		watch := fs.Bool("watch", false, "print a line every interval until interrupted")
		interval := fs.Duration("interval", time.Second, "how long each measurement lasts (the ring is looked at every 5ms within it)")
		count := fs.Int("count", 0, "with --watch, stop after N lines (0: never)")
		asJSON := jsonFlag(fs)
		return func(e *env, args []string) error {
			if *interval < 10*time.Millisecond {
				return usagef("--interval must be at least 10ms")
			}
			t, err := oneTarget(args)
			if err != nil {
				return err
			}
			defer t.Close()
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			m := ringo.NewMeter(t.ring)
			loss, _ := t.loss()
			dropped := loss.Dropped
			// The meter looks every few milliseconds and the counts add
			// up to one line per interval: a producer that laps the
			// ring between two looks leaves only an estimate.
			look := time.NewTicker(min(5*time.Millisecond, *interval))
			defer look.Stop()
			last := time.Now()
			var sum ringo.Traffic
			var lastNote string
			for lines := 0; ; {
				select {
				case <-ctx.Done():
					return nil
				case <-look.C:
				}
				tr := m.Sample()
				sum.Records += tr.Records
				sum.Bytes += tr.Bytes
				sum.Estimated = sum.Estimated || tr.Estimated
				sum.Positions = tr.Positions
				if time.Since(last) < *interval {
					continue
				}
				tr, sum = sum, ringo.Traffic{}
				now := time.Now()
				secs := now.Sub(last).Seconds()
				last = now
				s, note := measure(now, secs, tr, t.ring.Size())
				if note != "" && note != lastNote {
					fmt.Fprintf(e.stderr, "ringo stat: %s\n", note)
				}
				lastNote = note
				if l, ok := t.loss(); ok {
					d := l.Dropped
					rate := float64(int64(d-dropped)) / secs // (signed: a counter that went back is a corrupt ring)
					dropped = d
					s.Dropped, s.DropsPerSec = &d, &rate
					if t.shared != nil {
						s.Abandoned = &l.Abandoned
					}
				}
				if *asJSON {
					err = writeJSON(e.stdout, s)
				} else {
					_, err = fmt.Fprintln(e.stdout, s.text())
				}
				if err != nil {
					return err
				}
				if lines++; !*watch || lines == *count {
					return nil
				}
			}
		}
	},
}

// statLine is one measurement; the JSON names are a contract.
type statLine struct {
	Time          string   `json:"time"`
	RecordsPerSec float64  `json:"records_per_sec"`
	BytesPerSec   float64  `json:"bytes_per_sec"`
	AvailData     uint64   `json:"avail_data"`
	Size          int      `json:"size"`
	Fill          float64  `json:"fill"`
	Estimated     bool     `json:"estimated"`
	Dropped       *uint64  `json:"dropped,omitempty"`
	Abandoned     *uint64  `json:"abandoned,omitempty"`
	DropsPerSec   *float64 `json:"drops_per_sec,omitempty"`
}

// measure is the line of a measurement of secs seconds ending at now: the
// traffic tr of a ring of size bytes. Positions that no healthy ring has
// make the fill an estimate, clamped to 0 or 1; note then says what was
// wrong.
func measure(now time.Time, secs float64, tr ringo.Traffic, size int) (statLine, string) {
	avail, note := occupancy(tr.Positions, size)
	s := statLine{
		Time:      now.UTC().Format(time.RFC3339),
		AvailData: avail,
		Size:      size,
		Fill:      percent(avail, size) / 100,
		Estimated: tr.Estimated || note != "",
	}
	if secs > 0 {
		s.RecordsPerSec = float64(tr.Records) / secs
		s.BytesPerSec = float64(tr.Bytes) / secs
	}
	return s, note
}

func (s statLine) text() string {
	approx := ""
	if s.Estimated {
		approx = "~"
	}
	const width = 20
	fill := s.Fill
	if !(fill >= 0) { // (NaN too)
		fill = 0
	}
	fill = min(fill, 1)
	full := int(fill*width + 0.5)
	bar := strings.Repeat("#", full) + strings.Repeat(".", width-full)
	clock := s.Time
	if len(clock) >= 19 {
		clock = clock[11:19]
	}
	line := fmt.Sprintf("%s  %s%10.0f rec/s  %s%12s/s  [%s] %s%5.1f%%", clock, approx, s.RecordsPerSec,
		approx, humanRate(s.BytesPerSec), bar, approx, 100*fill)
	rate := 0.0
	if s.DropsPerSec != nil {
		rate = *s.DropsPerSec
	}
	switch {
	case s.Dropped != nil && s.Abandoned != nil:
		line += fmt.Sprintf("  drops %.0f/s (total %d, abandoned %d)", rate, *s.Dropped, *s.Abandoned)
	case s.Dropped != nil:
		line += fmt.Sprintf("  drops %.0f/s (total %d)", rate, *s.Dropped)
	default:
		line += "  drops -"
	}
	return line
}
