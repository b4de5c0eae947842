package jetstream_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/ringo-bpf/ringo"
	"github.com/ringo-bpf/ringo/forward"
	"github.com/ringo-bpf/ringo/forward/jetstream"
	"github.com/ringo-bpf/ringo/internal/natstest"
	"github.com/ringo-bpf/ringo/internal/waitfor"
)

// TestMain runs the forwarder child of TestForwarderKilled when asked.
func TestMain(m *testing.M) {
	if spec := os.Getenv("RINGO_FORWARD_CHILD"); spec != "" {
		os.Exit(forwarderChild(spec))
	}
	code := m.Run()
	natstest.RemoveBinary()
	os.Exit(code)
}

// forwarderChild forwards the shared ring dir|name to url|subject until it
// is killed or gets SIGTERM.
func forwarderChild(spec string) int {
	f := strings.Split(spec, "|")
	dir, name, url, subject := f[0], f[1], f[2], f[3]
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	sink, err := jetstream.Connect(ctx, jetstream.Config{URL: url, Subject: subject})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer sink.Close()
	var r *ringo.Ring
	var rd *ringo.Reader
	// The killed consumer's claim on the ring is taken over once the
	// ring sees it is dead.
	for try := 0; ; try++ {
		r, err = ringo.Open(name, ringo.WithDir(dir))
		if err == nil {
			rd, err = ringo.NewReader(r)
		}
		if err == nil || try == 200 {
			break
		}
		if r != nil {
			r.Close()
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer r.Close()
	defer rd.Close()
	fw, err := forward.New(rd, sink, forward.Config{Host: "testhost", BatchRecords: 256})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := fw.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// The forwarder is killed (SIGKILL) mid-stream again and again and
// restarted: nothing that reached the ring is lost, and what batches in
// flight at the kill sent is stored once, JetStream dropping the copies the
// next forwarder sends by their message IDs.
func TestForwarderKilled(t *testing.T) {
	srv := natstest.Start(t)
	srv.CreateStream("KILL", false, 0, "kill.>")
	dir := t.TempDir()
	r, err := ringo.Create("k", 1<<16, ringo.WithDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { r.Close(); ringo.Remove("k", ringo.WithDir(dir)) }()

	var children []*exec.Cmd
	t.Cleanup(func() { // none left behind if the test fails
		for _, c := range children {
			if c.ProcessState == nil {
				c.Process.Kill()
				c.Wait()
			}
		}
	})
	start := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "RINGO_FORWARD_CHILD="+strings.Join([]string{dir, "k", srv.URL(), "kill.{ring}"}, "|"))
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		children = append(children, cmd)
		return cmd
	}
	// Two producers at about 10k records/s each, for as long as the kills
	// go on, then 1000 records more each, written while no forwarder runs.
	const producers, tail = 2, 1000
	killing := make(chan struct{})
	var stopProducing atomic.Bool
	written := make([]int, producers)
	var wg sync.WaitGroup
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 64)
			next := time.Now()
			left := -1 // records still to write once the kills are over
			for s := 0; left != 0 && !stopProducing.Load(); s++ {
				for errors.Is(r.Output(record(buf, p, s), 0), ringo.ErrFull) && !stopProducing.Load() {
					time.Sleep(100 * time.Microsecond) // full while no forwarder runs
				}
				written[p] = s + 1
				switch {
				case left > 0:
					left--
				case left < 0:
					select {
					case <-killing:
						left = tail
					default:
					}
				}
				if next = next.Add(100 * time.Microsecond); time.Until(next) > 0 {
					time.Sleep(time.Until(next))
				}
			}
		}()
	}
	defer func() { // on the way out, whatever happened
		stopProducing.Store(true)
		waitfor.Group(t, &wg, waitfor.Short, "the producers to stop")
	}()

	// Each forwarder is killed once it has stored something, a random
	// moment later: mid-stream, however slowly it started.
	rng := rand.New(rand.NewPCG(7, 7))
	kills := 0
	for range 5 {
		before := srv.Count("KILL")
		cmd := start()
		waitfor.Until(t, waitfor.Long, "a restarted forwarder to store records", func() bool { return srv.Count("KILL") > before })
		time.Sleep(time.Duration(rng.IntN(100)) * time.Millisecond)
		cmd.Process.Kill()
		waitfor.Process(t, cmd, waitfor.Short, "the killed forwarder to exit")
		kills++
	}
	close(killing)
	stored := srv.Count("KILL")
	final := start()
	waitfor.Group(t, &wg, waitfor.Long, "the producers to write their last records")
	total := uint64(written[0] + written[1])
	waitCount(t, srv, "KILL", total, waitfor.Long)
	final.Process.Signal(syscall.SIGTERM)
	if err := waitfor.Process(t, final, waitfor.Short, "the last forwarder to stop at SIGTERM"); err != nil {
		t.Errorf("last forwarder: %v", err)
	}
	t.Logf("%d kills; %d of %d records stored before the last forwarder started", kills, stored, total)
	if stored == 0 || stored >= total {
		t.Fatalf("%d of %d records stored when the killing stopped: the kills did not happen mid-stream", stored, total)
	}
	checkStream(t, srv.Messages("KILL"), "testhost", map[string][]int{"k": written}, nil)
}

// The server crashes (SIGKILL) mid-stream and comes back a second later:
// the forwarder reconnects, says so in its log, and every record is stored
// once and in order, except those the ring refused while full, which its
// drop counter counts exactly.
func TestServerOutage(t *testing.T) {
	srv := natstest.Start(t, natstest.AsProcess())
	srv.CreateStream("OUT", false, 0, "out.>")
	r, err := ringo.New(1<<14, ringo.WithName("out"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var log natstest.Log
	fw := startForwarder(t, jetstream.Config{URL: srv.URL(), Subject: "out.{ring}", AckTimeout: 2 * time.Second, MaxReconnectWait: 200 * time.Millisecond, Logger: log.Logger()},
		forward.Config{BatchRecords: 256, MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, Logger: log.Logger()}, r)

	// One producer at about 20k records/s, until the server is back and
	// 20000 records more are written; refusals are drops.
	const tail = 20000
	skipped := map[[2]int]bool{}
	var refused atomic.Int64
	restarted := make(chan struct{})
	var stopProducing atomic.Bool
	produced := make(chan error, 1)
	total := 0
	go func() {
		buf := make([]byte, 64)
		next := time.Now()
		left := -1
		for s := 0; left != 0; s++ {
			if stopProducing.Load() {
				produced <- errors.New("stopped")
				return
			}
			if err := r.Output(record(buf, 0, s), 0); errors.Is(err, ringo.ErrFull) {
				skipped[[2]int{0, s}] = true
				refused.Add(1)
			} else if err != nil {
				produced <- err
				return
			}
			total = s + 1
			if left > 0 {
				left--
			} else if left < 0 {
				select {
				case <-restarted:
					left = tail
				default:
				}
			}
			if next = next.Add(50 * time.Microsecond); time.Until(next) > 0 {
				time.Sleep(time.Until(next))
			}
		}
		produced <- nil
	}()
	defer stopProducing.Store(true)
	// The outage, once the forwarder is under way, lasts until the
	// forwarder has seen it (its log says so) and the ring has filled.
	says := func(want ...string) func() bool {
		return func() bool {
			for _, w := range want {
				if !strings.Contains(log.String(), w) {
					return false
				}
			}
			return true
		}
	}
	fw.waitForwarded(t, 1000, waitfor.Long)
	srv.Kill()
	waitfor.Until(t, waitfor.Long, "the forwarder to log the outage and the ring to refuse a record", func() bool {
		return says("disconnected from NATS", "reconnecting", "publish failed; records stay in the ring")() && refused.Load() > 0
	})
	srv.Restart()
	close(restarted)
	if err := waitfor.Recv(t, produced, waitfor.Long, "the producer to write its records"); err != nil {
		t.Fatal(err)
	}
	if len(skipped) == 0 {
		t.Fatal("no record was refused during a second's outage: the ring did not fill")
	}
	if l, _ := r.Loss(); l.Dropped != uint64(len(skipped)) {
		d := l.Dropped
		t.Errorf("the ring counts %d drops, the producer saw %d refusals", d, len(skipped))
	}
	want := uint64(total - len(skipped))
	waitCount(t, srv, "OUT", want, waitfor.Long)
	fw.waitForwarded(t, want, waitfor.Long)
	st := fw.f.Stats()
	fw.stop(t)
	checkStream(t, srv.Messages("OUT"), "testhost", map[string][]int{"out": {total}}, map[string]map[[2]int]bool{"out": skipped})
	t.Logf("%d records, %d dropped during the outage; forwarder %+v", total, len(skipped), st)
	if st.Failures == 0 {
		t.Error("no failed batch counted across the outage")
	}
	if st.Reordered != 0 {
		t.Errorf("%d records stored out of order", st.Reordered)
	}
	// (Its reconnect handler runs on a goroutine of the NATS client's.)
	waitfor.Until(t, waitfor.Short, "the forwarder to log that it reconnected", says("reconnected to NATS"))
}

// Connecting fails with an error that says what is wrong, and no records
// are consumed: the caller makes its Reader only after Connect succeeded.
func TestConnectErrors(t *testing.T) {
	srv := natstest.Start(t)
	srv.CreateStream("S", true, 0, "ok.>")
	srv.CreateStreamConfig(natsjs.StreamConfig{Name: "NOACK", Subjects: []string{"noack.>"}, NoAck: true, Storage: natsjs.MemoryStorage})
	auth := natstest.Start(t, natstest.WithUser("ringo", "s3cret"))
	noJS := natstest.Start(t, natstest.WithoutJetStream())
	down := natstest.Start(t)
	down.Stop()
	ctx := context.Background()
	withPass := strings.Replace(auth.URL(), "nats://", "nats://ringo:wrong@", 1)
	for _, tc := range []struct {
		name string
		cfg  jetstream.Config
		want string
	}{
		{"no server", jetstream.Config{URL: down.URL(), Subject: "ok.x"}, "no NATS server answers at " + down.URL()},
		{"bad password", jetstream.Config{URL: withPass, Subject: "ok.x"}, "refused the credentials"},
		{"no password", jetstream.Config{URL: auth.URL(), Subject: "ok.x"}, "refused the credentials"},
		{"no jetstream", jetstream.Config{URL: noJS.URL(), Subject: "ok.x"}, "JetStream is not enabled"},
		{"missing stream", jetstream.Config{URL: srv.URL(), Subject: "ok.x", Stream: "NOPE"}, `stream "NOPE" does not exist`},
		{"no stream for subject", jetstream.Config{URL: srv.URL(), Subject: "other.x"}, `no stream on ` + srv.URL() + ` captures subject "other.x"`},
		{"stream without subject", jetstream.Config{URL: srv.URL(), Subject: "other.x", Stream: "S"}, `stream "S" does not capture subject "other.x" (its subjects: ok.>)`},
		{"no acknowledgements", jetstream.Config{URL: srv.URL(), Subject: "noack.x"}, `stream "NOACK" does not acknowledge messages`},
		{"wildcard", jetstream.Config{URL: srv.URL(), Subject: "ok.>"}, "has a wildcard"},
		{"empty token", jetstream.Config{URL: srv.URL(), Subject: "ok..x"}, "empty token"},
		{"no url", jetstream.Config{Subject: "ok.x"}, "no NATS URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := jetstream.Connect(ctx, tc.cfg)
			if err == nil {
				s.Close()
				t.Fatal("connected")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "wrong") {
				t.Fatalf("error %q shows the password", err)
			}
		})
	}
	// The right password works.
	s, err := jetstream.Connect(ctx, jetstream.Config{URL: strings.Replace(auth.URL(), "nats://", "nats://ringo:s3cret@", 1), Subject: "x.y"})
	if err == nil {
		s.Close()
		t.Fatal("connected to a server without a stream for x.y")
	}
	if !strings.Contains(err.Error(), "no stream") {
		t.Fatalf("with the right password: %v, want the missing stream named", err)
	}
}

// While the connection is down, publishing fails at once (not at the hour
// of ack timeout) rather than being buffered for the next connection.
func TestPublishWhileDisconnected(t *testing.T) {
	srv := natstest.Start(t)
	srv.CreateStream("D", true, 0, "d.>")
	sink, err := jetstream.Connect(context.Background(), jetstream.Config{URL: srv.URL(), Subject: "d.x", AckTimeout: time.Hour, Logger: new(natstest.Log).Logger()})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	msgs := []forward.Message{{ID: "a.0", Host: "h", Ring: ringo.Identity{Name: "r"}, Data: []byte("x")}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if res, err := sink.Send(ctx, msgs).Wait(ctx); err != nil || res.Acked != 1 {
		t.Fatalf("connected: %+v, %v", res, err)
	}
	srv.Stop()
	waitfor.Until(t, waitfor.Short, "the sink to see the server gone", func() bool { return !sink.Conn().IsConnected() })
	res, err := sink.Send(ctx, msgs).Wait(ctx)
	if err == nil || res.Acked != 0 || ctx.Err() != nil {
		t.Fatalf("disconnected: %+v, %v (ctx %v): want a failure at once", res, err, ctx.Err())
	}
	t.Logf("disconnected: %v", err)
}
