// Package natstest runs NATS servers with JetStream inside tests and
// benchmarks: the real server (github.com/nats-io/nats-server), on the
// loopback, storing in a directory of the test's, so that forwarding is
// tested end to end with nothing to install.
package natstest

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Server is a NATS server that can be stopped and started again on the
// same port with the same storage, as an outage and a recovery.
type Server struct {
	t    testing.TB
	opts server.Options
	srv  *server.Server // in this process
	cmd  *exec.Cmd      // or a process of its own (AsProcess)
	proc bool
	gogc string // the process's GOGC, if set
	log  *Log   // the process's log
}

// Log collects log lines from any goroutine (the server process's, a
// forwarder's), for tests that check what was said.
type Log struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *Log) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// String returns everything written so far.
func (l *Log) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// Logger returns a logger writing text lines to l.
func (l *Log) Logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

// Option changes how the server runs.
type Option func(*Server)

// WithUser makes the server demand this user and password.
func WithUser(user, password string) Option {
	return func(s *Server) { s.opts.Username, s.opts.Password = user, password }
}

// AsProcess runs the server as a process of its own, the nats-server
// program built from the module this project requires, as a server is run
// for real: its memory and its garbage collector are not the test's.
func AsProcess() Option { return func(s *Server) { s.proc = true } }

// WithGOGC runs a server process (AsProcess) with this GOGC: nats-server
// keeps the IDs of its de-duplication window as a map of pointers, which
// its garbage collector scans again and again; a higher GOGC trades memory
// for that time.
func WithGOGC(gogc int) Option {
	return func(s *Server) { s.gogc = strconv.Itoa(gogc) }
}

// WithoutJetStream runs the server without JetStream.
func WithoutJetStream() Option { return func(s *Server) { s.opts.JetStream = false } }

// Start starts a server on a free loopback port, with JetStream storing in
// a temporary directory; it stops when the test ends.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	s := &Server{t: t, opts: server.Options{
		Host:      "127.0.0.1",
		Port:      freePort(t),
		JetStream: true,
		StoreDir:  t.TempDir(),
		NoLog:     true,
		NoSigs:    true,
		// No cluster, no HTTP monitor: only the client port is opened.
		HTTPPort:           -1,
		JetStreamMaxMemory: 1 << 30,
		JetStreamMaxStore:  8 << 30,
	}}
	for _, o := range opts {
		o(s)
	}
	s.Restart()
	t.Cleanup(s.Stop)
	return s
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("natstest: find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// URL is the server's client URL.
func (s *Server) URL() string { return "nats://127.0.0.1:" + strconv.Itoa(s.opts.Port) }

// Stop shuts the server down (an outage); Restart starts it again.
func (s *Server) Stop() {
	if s.cmd != nil {
		s.cmd.Process.Signal(syscall.SIGTERM)
		// A server that does not stop within its shutdown's time is
		// killed, and the test told.
		done := make(chan struct{})
		go func() { s.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			s.cmd.Process.Kill()
			<-done
			s.t.Errorf("natstest: nats-server on port %d did not stop within 30s of SIGTERM: killed", s.opts.Port)
		}
		s.cmd = nil
	}
	if s.srv != nil {
		s.srv.Shutdown()
		s.srv.WaitForShutdown()
		s.srv = nil
	}
}

// Restart starts the server again, on the same port with the same storage:
// streams and their messages come back.
// Kill kills the server process with SIGKILL, a crash (AsProcess only).
func (s *Server) Kill() {
	if s.cmd == nil {
		s.t.Fatal("natstest: Kill needs a server started AsProcess")
	}
	s.cmd.Process.Kill()
	s.cmd.Wait()
	s.cmd = nil
}

func (s *Server) Restart() {
	s.t.Helper()
	if s.proc {
		s.startProcess()
		return
	}
	opts := s.opts // the server keeps and changes its copy
	srv, err := server.NewServer(&opts)
	if err != nil {
		s.t.Fatalf("natstest: new server: %v", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(20 * time.Second) {
		s.t.Fatalf("natstest: server on port %d not ready", s.opts.Port)
	}
	s.srv = srv
}

// Connect connects to the server as the test's client.
func (s *Server) Connect(opts ...nats.Option) *nats.Conn {
	s.t.Helper()
	if s.opts.Username != "" {
		opts = append(opts, nats.UserInfo(s.opts.Username, s.opts.Password))
	}
	nc, err := nats.Connect(s.URL(), opts...)
	if err != nil {
		s.t.Fatalf("natstest: connect: %v", err)
	}
	s.t.Cleanup(nc.Close)
	return nc
}

// jetStream returns a JetStream client on a connection of its own, and
// what closes that.
func (s *Server) jetStream() (jetstream.JetStream, func()) {
	s.t.Helper()
	var opts []nats.Option
	if s.opts.Username != "" {
		opts = append(opts, nats.UserInfo(s.opts.Username, s.opts.Password))
	}
	nc, err := nats.Connect(s.URL(), opts...)
	if err != nil {
		s.t.Fatalf("natstest: connect: %v", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		s.t.Fatal(err)
	}
	return js, nc.Close
}

// CreateStream creates a stream over subjects: file storage unless memory,
// with the given duplicate window (0: JetStream's default, 2 minutes).
func (s *Server) CreateStream(name string, memory bool, dupWindow time.Duration, subjects ...string) {
	s.t.Helper()
	cfg := jetstream.StreamConfig{Name: name, Subjects: subjects, Duplicates: dupWindow}
	if memory {
		cfg.Storage = jetstream.MemoryStorage
	}
	s.CreateStreamConfig(cfg)
}

// CreateStreamConfig creates a stream as cfg says.
func (s *Server) CreateStreamConfig(cfg jetstream.StreamConfig) {
	s.t.Helper()
	js, done := s.jetStream()
	defer done()
	name := cfg.Name
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, cfg); err != nil {
		s.t.Fatalf("natstest: create stream %s: %v", name, err)
	}
}

// Message is a stored message, as a test checks it.
type Message struct {
	Seq     uint64
	Subject string
	Header  nats.Header
	Data    []byte
}

// Messages returns every message of the stream, in stream order.
func (s *Server) Messages(stream string) []Message {
	s.t.Helper()
	js, done := s.jetStream()
	defer done()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		s.t.Fatalf("natstest: stream %s: %v", stream, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		s.t.Fatal(err)
	}
	total := info.State.Msgs
	var out []Message
	if total == 0 {
		return out
	}
	c, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		s.t.Fatal(err)
	}
	for uint64(len(out)) < total {
		batch, err := c.FetchNoWait(min(10000, int(total)-len(out)))
		if err != nil {
			s.t.Fatal(err)
		}
		got := 0
		for m := range batch.Messages() {
			md, err := m.Metadata()
			if err != nil {
				s.t.Fatal(err)
			}
			out = append(out, Message{Seq: md.Sequence.Stream, Subject: m.Subject(), Header: m.Headers(), Data: m.Data()})
			got++
		}
		if err := batch.Error(); err != nil {
			s.t.Fatal(err)
		}
		if got == 0 {
			time.Sleep(10 * time.Millisecond)
			if ctx.Err() != nil {
				s.t.Fatalf("natstest: read %d of %d messages of %s: %v", len(out), total, stream, ctx.Err())
			}
		}
	}
	return out
}

// Count returns how many messages the stream holds.
func (s *Server) Count(stream string) uint64 {
	s.t.Helper()
	js, done := s.jetStream()
	defer done()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		s.t.Fatalf("natstest: stream %s: %v", stream, err)
	}
	return st.CachedInfo().State.Msgs
}

// String describes the server.
func (s *Server) String() string { return fmt.Sprintf("nats-server at %s", s.URL()) }

// RemoveBinary removes the nats-server program AsProcess built, if it did:
// call it from TestMain after the tests ran.
func RemoveBinary() {
	if binaryBuilt.Load() {
		if bin, err := binary(); err == nil {
			os.RemoveAll(filepath.Dir(bin))
		}
	}
}

var binaryBuilt atomic.Bool

// binary builds the nats-server program once per test process.
var binary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "natstest-")
	if err != nil {
		return "", err
	}
	binaryBuilt.Store(true)
	bin := filepath.Join(dir, "nats-server")
	out, err := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", bin, "github.com/nats-io/nats-server/v2").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build nats-server: %v\n%s", err, out)
	}
	return bin, nil
})

func (s *Server) startProcess() {
	s.t.Helper()
	bin, err := binary()
	if err != nil {
		s.t.Fatalf("natstest: %v", err)
	}
	args := []string{"-a", s.opts.Host, "-p", strconv.Itoa(s.opts.Port), "-sd", s.opts.StoreDir}
	if s.opts.JetStream {
		args = append(args, "-js")
	}
	if s.opts.Username != "" {
		args = append(args, "--user", s.opts.Username, "--pass", s.opts.Password)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = os.Environ()
	if s.gogc != "" {
		cmd.Env = append(cmd.Env, "GOGC="+s.gogc)
	}
	if s.log == nil {
		s.log = new(Log)
		s.t.Cleanup(func() {
			if s.t.Failed() {
				s.t.Logf("nats-server's log:\n%s", s.log.String())
			}
		})
	}
	cmd.Stderr = s.log
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("natstest: start nats-server: %v", err)
	}
	s.cmd = cmd
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.Dial("tcp", net.JoinHostPort(s.opts.Host, strconv.Itoa(s.opts.Port)))
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("natstest: nats-server on port %d not ready: %v", s.opts.Port, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// JetStream answers a moment after the port opens.
	for {
		js, done := s.jetStream()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := js.AccountInfo(ctx)
		cancel()
		done()
		if err == nil || !s.opts.JetStream {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("natstest: JetStream of nats-server on port %d not ready: %v", s.opts.Port, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
