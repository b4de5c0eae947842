package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/ringo-bpf/ringo"
	"github.com/ringo-bpf/ringo/forward"
	"github.com/ringo-bpf/ringo/forward/jetstream"
	"github.com/ringo-bpf/ringo/internal/bpfmap"
)

var forwardCmd = &command{
	name:    "forward",
	args:    "TARGET... --nats URL --subject S [--stream NAME]",
	summary: "send records to NATS JetStream, consuming each only once the stream has it",
	help: `forward is a consumer (one per ring, as for dump) that publishes each record to
a JetStream subject: the payload as the message's data, and these headers:
  Nats-Msg-Id  RINGKEY.POS: RINGKEY is 11 characters (base64url) of a hash of
               the host and the ring's identity (its kind, name and
               incarnation: a ring created again under the same name gets
               other IDs), POS the record's position in base 36. JetStream
               drops a message whose ID it already holds.
  Ringo-Host   the host (--host)
  Ringo-Ring   the ring's name
  Ringo-Pos    the record's position in the ring, in decimal
A record leaves the ring only after the stream acknowledged it: kill
forward, or stop the server, and nothing that reached the ring is lost;
while the server is away the ring fills and its producers' refusals are
counted as drops (ringo show). forward reconnects by itself, with backoff,
and logs what happens on stderr.

TARGET is a ring as for the other commands (id:N, a pinned path, a shared
ring's name), or the pinned path of a ring set (an array or hash of maps of
ringbufs), whose rings are followed as they come and go. Several TARGETs
are forwarded together.

The stream must exist and capture the subject (nats stream add NAME
--subjects 'ringo.>'): forward checks it, and the URL and credentials,
before it consumes anything. The subject may contain {host} and {ring}, each
replaced by one subject token: the name's letters, digits, '-' and '_' as
they are, every other byte as % and two hex digits (kernel map "my.ring" is
my%2Ering, an unnamed map is %), so that different names never share a
subject. It runs until Ctrl-C (or --duration), then prints what it
forwarded; with --json, one JSON object (and with --stats one per interval).`,
	define: func(fs *flag.FlagSet) func(*env, []string) error {
		url := fs.String("nats", "", "NATS server URL(s), comma-separated: nats://[user:pass@]host:4222 (required)")
		subject := fs.String("subject", "", "subject to publish to; {host} and {ring} are replaced (required)")
		stream := fs.String("stream", "", "stream that must capture the subject (default: whichever does)")
		creds := fs.String("creds", "", "NATS credentials file (.creds)")
		host := fs.String("host", "", "host name in message IDs and headers (default: this machine's)")
		batch := fs.Int("batch", 4096, "records per batch, at most")
		ackTimeout := fs.Duration("ack-timeout", 10*time.Second, "how long to wait for the stream's acknowledgements of a batch")
		duration := fs.Duration("duration", 0, "stop after this long (0: at Ctrl-C)")
		every := fs.Duration("stats", 0, "print statistics every interval (0: only at the end)")
		asJSON := jsonFlag(fs)
		return func(e *env, args []string) error {
			if len(args) == 0 {
				return usagef("no TARGET")
			}
			if *url == "" || *subject == "" {
				return usagef("--nats URL and --subject S are required")
			}
			if *batch <= 0 {
				return usagef("--batch must be positive")
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if *duration > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, *duration)
				defer cancel()
			}
			log := slog.New(slog.NewTextHandler(e.stderr, nil))

			// Open the rings, and check the server and the stream,
			// before anything is consumed.
			var srcs []ringo.Source
			var sets []*ringo.KernelRingSet
			defer func() {
				for _, s := range sets {
					s.Close()
				}
			}()
			for _, spec := range args {
				if set, err := openPinnedSet(spec); set != nil || err != nil {
					if err != nil {
						return err
					}
					sets = append(sets, set)
					continue
				}
				t, err := openTarget(spec)
				if err != nil {
					return err
				}
				defer t.Close()
				src, err := t.source()
				if err != nil {
					return err
				}
				srcs = append(srcs, src)
			}
			sink, err := jetstream.Connect(ctx, jetstream.Config{URL: *url, Subject: *subject, Stream: *stream, Credentials: *creds, AckTimeout: *ackTimeout, Logger: log})
			if err != nil {
				return err
			}
			defer sink.Close()
			rd, err := ringo.NewReader(srcs...)
			if err != nil {
				return err
			}
			defer rd.Close()
			for _, s := range sets {
				if err := rd.AddSet(s); err != nil {
					return err
				}
			}
			fw, err := forward.New(rd, sink, forward.Config{Host: *host, BatchRecords: *batch, Logger: log})
			if err != nil {
				return err
			}
			log.Info("forwarding", "rings", strings.Join(args, " "), "nats", jetstream.Redact(*url), "subject", *subject, "stream", sink.Stream())
			start := time.Now()
			done := make(chan error, 1)
			go func() { done <- fw.Run(ctx) }()
			var tick <-chan time.Time
			if *every > 0 {
				t := time.NewTicker(*every)
				defer t.Stop()
				tick = t.C
			}
			for {
				select {
				case <-tick:
					if err := printForward(e, *asJSON, fw, rd, start); err != nil {
						return err
					}
					continue
				case err = <-done:
				}
				break
			}
			if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
				return err
			}
			return printForward(e, *asJSON, fw, rd, start)
		}
	},
}

// openPinnedSet opens the ring set pinned at spec, if spec is the path of
// one (an array or hash of maps); nil otherwise.
func openPinnedSet(spec string) (*ringo.KernelRingSet, error) {
	if !strings.Contains(spec, "/") {
		return nil, nil
	}
	if info, err := bpfmap.Describe(0, spec); err != nil || (info.Type != bpfmap.ArrayOfMaps && info.Type != bpfmap.HashOfMaps) {
		return nil, nil // not a set: openTarget says what it is
	}
	// Rings that others add to the set or take out are followed.
	return ringo.OpenRingSetPinned(spec, time.Second)
}

// forwardStats is what forward prints.
type forwardStats struct {
	Seconds    float64 `json:"seconds"`
	Forwarded  uint64  `json:"forwarded"`
	Duplicates uint64  `json:"duplicates"`
	Bytes      uint64  `json:"bytes"`
	Batches    uint64  `json:"batches"`
	Failures   uint64  `json:"failures"`
	Reordered  uint64  `json:"reordered"`
	// Dropped is what the rings' producers gave up on, where counted
	// (shared rings; kernel rings whose programs count drops).
	Dropped   uint64 `json:"dropped"`
	Counted   bool   `json:"drops_counted"`
	LastError string `json:"last_error,omitempty"`
}

func printForward(e *env, asJSON bool, fw *forward.Forwarder, rd *ringo.Reader, start time.Time) error {
	st := fw.Stats()
	out := forwardStats{Seconds: time.Since(start).Seconds(), Forwarded: st.Forwarded, Duplicates: st.Duplicates, Bytes: st.Bytes,
		Batches: st.Batches, Failures: st.Failures, Reordered: st.Reordered, LastError: st.LastError}
	if losses, err := rd.Stats(); err == nil {
		out.Counted = len(losses) > 0
		for _, l := range losses {
			out.Dropped += l.Dropped
			out.Counted = out.Counted && l.Counted
		}
	}
	if asJSON {
		return writeJSON(e.stdout, out)
	}
	drops := "not counted"
	if out.Counted {
		drops = fmt.Sprint(out.Dropped)
	}
	_, err := fmt.Fprintf(e.stdout, "forwarded %d records (%s) in %.1fs, %d duplicates dropped by the stream, %d batches, %d failed and retried; records the rings' producers gave up on: %s\n",
		out.Forwarded, human(out.Bytes), out.Seconds, out.Duplicates, out.Batches, out.Failures, drops)
	return err
}
