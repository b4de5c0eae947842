// Package jetstream is the NATS JetStream sink of package forward: it
// publishes records to a JetStream subject and reports which ones the
// stream acknowledged.
//
// Each record is one message. Its headers:
//
//	Nats-Msg-Id  RINGKEY.POS: forward.RingKey of the host and the ring's
//	             identity (which ring of its name, on which host), a
//	             dot, the position in base 36. JetStream drops a
//	             message whose ID it stored within the stream's
//	             duplicate window, so records sent again after a
//	             failure or a restart are stored once
//	Ringo-Host   the forwarder's host
//	Ringo-Ring   the ring's name
//	Ringo-Pos    the record's position in the ring (decimal), increasing
//
// Messages of a batch are published asynchronously, all at once, and the
// batch is over when every one is acknowledged, refused, or past the ack
// timeout. The connection reconnects by itself, with exponential backoff,
// and says so in the log; publishing while it is down fails at once rather
// than being buffered, and a batch that sees a reconnection stops there,
// so that no record is sent on a new connection while an earlier one of
// its batch may still be lost on the old: retried, the batch goes out in
// order again. Order can break only where the stream itself refuses one
// message and stores the next (a cluster electing a new stream leader in
// between, say): forward counts such records as Reordered, and their
// Ringo-Pos header still gives their order.
package jetstream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	js "github.com/nats-io/nats.go/jetstream"
	"github.com/ringo-bpf/ringo/forward"
)

// Config says where to publish.
type Config struct {
	// URL is the NATS server, or a comma-separated list of the servers of
	// a cluster: nats://host:4222, with user:password@ for password
	// authentication.
	URL string
	// Subject is the subject records are published to. It may contain
	// {host} and {ring}, replaced by the host's and the ring's names as
	// Token writes them (one subject token each, different names giving
	// different tokens), so that one stream can hold the records of many
	// hosts and rings, each on its own subject.
	Subject string
	// Stream is the stream that must capture Subject; if empty, whichever
	// stream captures it. The stream must exist: ringo does not create
	// streams (their storage, replicas and limits are the operator's
	// choice).
	Stream string
	// Credentials is a NATS .creds file (user JWT and NKey seed), if the
	// server wants one.
	Credentials string
	// AckTimeout is how long to wait for the last acknowledgement of a
	// batch before counting the rest as failed; default 10 s.
	AckTimeout time.Duration
	// ConnectTimeout bounds each attempt to connect; default 5 s.
	ConnectTimeout time.Duration
	// MaxReconnectWait caps the backoff between reconnection attempts,
	// which starts at 50 ms and doubles; default 5 s.
	MaxReconnectWait time.Duration
	// Logger receives disconnections and reconnections; default
	// slog.Default().
	Logger *slog.Logger
	// Options are more nats.go options (TLS, tokens, NKeys...).
	Options []nats.Option
}

// Sink publishes to a JetStream stream. Its Send is for one goroutine at a
// time (a Forwarder's); batches may be waited for from any goroutine.
type Sink struct {
	nc     *nats.Conn
	cfg    Config
	stream string
	sub    *nats.Subscription
	prefix string // of the reply subjects acknowledgements come to

	subjects map[string]string // subject of each ring name
	msg      nats.Msg
	// One value slice per header, reused for every message.
	vID, vHost, vRing, vPos []string
	reply                   []byte

	mu       sync.Mutex
	next     uint64            // number of the next batch
	inflight map[uint64]*batch // batches sent and not waited for
	// fence is the connection's reconnection count and loss count when
	// the oldest batch in flight began: if either changes, messages sent
	// since may be lost on the old connection, so nothing more goes out
	// until the batches in flight are over.
	fence struct{ reconnects, drops uint64 }
	// drops counts lost connections: acknowledgements of messages sent
	// before one will never come.
	drops atomic.Uint64
}

// batch is a batch being published.
type batch struct {
	s       *Sink
	num     uint64
	results []result // under s.mu
	pending int      // messages sent and not yet answered, under s.mu
	sent    int
	sendErr error
	fence   struct{ reconnects, drops uint64 }
	acked   chan struct{} // a token when pending drops to 0, or the connection is lost
}

// lost is called when the connection is lost: it wakes the batches waiting
// for acknowledgements that will not come.
func (s *Sink) lost() {
	s.drops.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, b := range s.inflight {
		b.wake()
	}
}

// wake wakes the batch's Wait; s.mu held.
func (b *batch) wake() {
	select {
	case b.acked <- struct{}{}:
	default:
	}
}

// result is the outcome of one message of a batch.
type result struct {
	state int // unsent, sent, ok, failed
	dup   bool
	err   error
}

const (
	unsent = iota
	sent
	ok
	failed
)

// Connect connects to the server, checks that JetStream is enabled and that
// a stream (cfg.Stream, if given) captures the subject, and returns a sink
// publishing to it. Its errors say what is wrong: no server at the URL, the
// credentials refused, no JetStream, no such stream, a stream that does not
// capture the subject.
func Connect(ctx context.Context, cfg Config) (*Sink, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	where := Redact(cfg.URL)
	log := cfg.Logger
	s := &Sink{cfg: cfg, subjects: make(map[string]string)}
	opts := []nats.Option{
		nats.Name("ringo forward"),
		nats.Timeout(cfg.ConnectTimeout),
		nats.MaxReconnects(-1),
		// Fail publishing while disconnected rather than buffer it for
		// the next connection: see the package documentation.
		nats.ReconnectBufSize(-1),
		nats.CustomReconnectDelay(func(attempts int) time.Duration {
			d := min(50*time.Millisecond<<min(attempts, 10), cfg.MaxReconnectWait)
			d = d/2 + rand.N(d/2+1) // jitter, so that a fleet does not reconnect in step
			if attempts == 1 || attempts%10 == 0 {
				log.Info("forward/jetstream: reconnecting", "server", where, "attempt", attempts, "wait", d)
			}
			return d
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err == nil {
				return // closed by us
			}
			s.lost()
			log.Warn("forward/jetstream: disconnected from NATS", "server", where, "err", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("forward/jetstream: reconnected to NATS", "server", nc.ConnectedUrlRedacted())
		}),
	}
	if cfg.Credentials != "" {
		opts = append(opts, nats.UserCredentials(cfg.Credentials))
	}
	nc, err := nats.Connect(cfg.URL, append(opts, cfg.Options...)...)
	if err != nil {
		return nil, connectError(where, err)
	}
	s.nc = nc
	if err := s.check(ctx, where); err != nil {
		nc.Close()
		return nil, err
	}
	s.prefix = nats.NewInbox()
	s.sub, err = nc.Subscribe(s.prefix+".>", s.onAck)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("forward/jetstream: subscribe to acknowledgements: %w", err)
	}
	s.sub.SetPendingLimits(-1, -1) // never drop an acknowledgement
	s.vID, s.vHost, s.vRing, s.vPos = []string{""}, []string{""}, []string{""}, []string{""}
	s.msg.Header = nats.Header{
		"Nats-Msg-Id": s.vID, "Ringo-Host": s.vHost, "Ringo-Ring": s.vRing,
		"Ringo-Pos": s.vPos,
	}

	return s, nil
}

func (c *Config) defaults() error {
	if c.URL == "" {
		return errors.New("forward/jetstream: no NATS URL (nats://host:4222)")
	}
	if err := checkSubject(expand(c.Subject, "host", "ring")); err != nil {
		return err
	}
	if c.AckTimeout <= 0 {
		c.AckTimeout = 10 * time.Second
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = 5 * time.Second
	}
	if c.MaxReconnectWait <= 0 {
		c.MaxReconnectWait = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// checkSubject refuses what cannot be published to.
func checkSubject(subj string) error {
	if subj == "" {
		return errors.New("forward/jetstream: no subject to publish to")
	}
	for tok := range strings.SplitSeq(subj, ".") {
		switch {
		case tok == "":
			return fmt.Errorf("forward/jetstream: subject %q has an empty token (a leading, trailing or double dot)", subj)
		case tok == "*" || tok == ">":
			return fmt.Errorf("forward/jetstream: subject %q has a wildcard: messages are published to one subject (use {host} and {ring} to vary it)", subj)
		case strings.ContainsAny(tok, " \t\r\n"):
			return fmt.Errorf("forward/jetstream: subject %q has white space", subj)
		}
	}
	return nil
}

// expand fills the {host} and {ring} placeholders of a subject.
func expand(subj, host, ring string) string {
	return strings.NewReplacer("{host}", Token(host), "{ring}", Token(ring)).Replace(subj)
}

// Token writes a name (a host's, a ring's) as one subject token, the way
// {host} and {ring} are filled in: letters, digits, '-' and '_' as they
// are, every other byte as '%' and two upper-case hex digits (a '.' as
// %2E, '*' as %2A, '>' as %3E, '%' itself as %25), and the empty name (an
// unnamed kernel map) as a lone "%". So every token is one a subject may
// hold (no separator, no wildcard, no white space), and different names
// give different tokens: "w*" and "w>", or "a.b" and "a_b", are never
// published to one subject.
func Token(name string) string {
	if name == "" {
		return "%"
	}
	plain := true
	for i := 0; i < len(name) && plain; i++ {
		plain = tokenByte(name[i])
	}
	if plain {
		return name
	}
	const hexDigits = "0123456789ABCDEF"
	b := make([]byte, 0, len(name)+8)
	for i := 0; i < len(name); i++ {
		if c := name[i]; tokenByte(c) {
			b = append(b, c)
		} else {
			b = append(b, '%', hexDigits[c>>4], hexDigits[c&15])
		}
	}
	return string(b)
}

// tokenByte reports whether Token keeps c as it is.
func tokenByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}

// Redact returns a URL list as Config.URL takes it with the passwords
// hidden, for logs and errors.
func Redact(urls string) string {
	var out []string
	for u := range strings.SplitSeq(urls, ",") {
		u = strings.TrimSpace(u)
		if p, err := url.Parse(u); err == nil && p.User != nil {
			u = p.Redacted()
		}
		out = append(out, u)
	}
	return strings.Join(out, ",")
}

// connectError says why connecting failed and what to do.
func connectError(where string, err error) error {
	msg := strings.ToLower(err.Error())
	switch {
	case errors.Is(err, nats.ErrAuthorization), strings.Contains(msg, "authorization"), strings.Contains(msg, "authentication"):
		return fmt.Errorf("forward/jetstream: the NATS server at %s refused the credentials (%v): check the user and password in the URL, or the .creds file: %w", where, err, err)
	case errors.Is(err, nats.ErrNoServers), strings.Contains(msg, "connection refused"), strings.Contains(msg, "no such host"), strings.Contains(msg, "i/o timeout"):
		return fmt.Errorf("forward/jetstream: no NATS server answers at %s (%v): is nats-server running there, and is the URL right?: %w", where, err, err)
	}
	return fmt.Errorf("forward/jetstream: connect to %s: %w", where, err)
}

// check finds the stream and checks that it can take the records.
func (s *Sink) check(ctx context.Context, where string) error {
	j, err := js.New(s.nc)
	if err != nil {
		return fmt.Errorf("forward/jetstream: %w", err)
	}
	if _, err := j.AccountInfo(ctx); err != nil {
		if errors.Is(err, js.ErrJetStreamNotEnabled) || errors.Is(err, js.ErrJetStreamNotEnabledForAccount) {
			return fmt.Errorf("forward/jetstream: JetStream is not enabled on %s (start nats-server with -js, or enable it for this account): %w", where, err)
		}
		return fmt.Errorf("forward/jetstream: JetStream account info from %s: %w", where, err)
	}
	// A subject as one of this host's rings would have it.
	sample := expand(s.cfg.Subject, "host", "ring")
	name := s.cfg.Stream
	if name == "" {
		name, err = j.StreamNameBySubject(ctx, sample)
		if errors.Is(err, js.ErrStreamNotFound) || (err == nil && name == "") {
			return fmt.Errorf("forward/jetstream: no stream on %s captures subject %q: create one (nats stream add NAME --subjects %q) or fix the subject: %w", where, s.cfg.Subject, subjectFilter(s.cfg.Subject), js.ErrStreamNotFound)
		}
		if err != nil {
			return fmt.Errorf("forward/jetstream: find the stream of subject %q on %s: %w", s.cfg.Subject, where, err)
		}
	}
	st, err := j.Stream(ctx, name)
	if errors.Is(err, js.ErrStreamNotFound) {
		return fmt.Errorf("forward/jetstream: stream %q does not exist on %s: create it (nats stream add %s --subjects %q): %w", name, where, name, subjectFilter(s.cfg.Subject), err)
	}
	if err != nil {
		return fmt.Errorf("forward/jetstream: stream %q on %s: %w", name, where, err)
	}
	info := st.CachedInfo()
	if info.Config.NoAck {
		return fmt.Errorf("forward/jetstream: stream %q does not acknowledge messages (no_ack): records could never be released from the ring; use a stream that acknowledges", name)
	}
	if !captures(info.Config.Subjects, sample) {
		return fmt.Errorf("forward/jetstream: stream %q does not capture subject %q (its subjects: %s)", name, s.cfg.Subject, strings.Join(info.Config.Subjects, ", "))
	}
	if info.Config.Duplicates <= 0 {
		s.cfg.Logger.Warn("forward/jetstream: the stream keeps no duplicate window: records sent again after a failure are stored again", "stream", name)
	}
	s.stream = name
	return nil
}

// subjectFilter is the subject with its placeholders as wildcards, for
// the advice in errors.
func subjectFilter(subj string) string {
	return strings.NewReplacer("{host}", "*", "{ring}", "*").Replace(subj)
}

// captures reports whether one of filters matches subj.
func captures(filters []string, subj string) bool {
	for _, f := range filters {
		if matches(f, subj) {
			return true
		}
	}
	return false
}

// matches reports whether the subject filter f (with * and > wildcards)
// matches subj.
func matches(f, subj string) bool {
	ft, st := strings.Split(f, "."), strings.Split(subj, ".")
	for i, t := range ft {
		if t == ">" {
			return len(st) > i
		}
		if i >= len(st) || (t != "*" && t != st[i]) {
			return false
		}
	}
	return len(ft) == len(st)
}

// Stream returns the name of the stream the sink publishes to.
func (s *Sink) Stream() string { return s.stream }

// Conn returns the sink's NATS connection.
func (s *Sink) Conn() *nats.Conn { return s.nc }

// Close closes the connection.
func (s *Sink) Close() error {
	s.nc.Close()
	return nil
}

// Send starts publishing msgs, in order, after the batches sent before
// (see forward.Sink).
func (s *Sink) Send(ctx context.Context, msgs []forward.Message) forward.Batch {
	s.mu.Lock()
	if s.inflight == nil {
		s.inflight = make(map[uint64]*batch)
	}
	if len(s.inflight) == 0 {
		s.fence.reconnects, s.fence.drops = s.nc.Stats().Reconnects, s.drops.Load()
	}
	b := &batch{s: s, num: s.next, results: make([]result, len(msgs)), fence: s.fence, acked: make(chan struct{}, 1)}
	s.next++
	s.inflight[b.num] = b
	// Every message is marked sent before it goes out (its
	// acknowledgement may come first); those that do not go out are
	// unmarked below. One lock for the batch, not two per message.
	for i := range b.results {
		b.results[i].state = sent
	}
	b.pending = len(msgs)
	s.mu.Unlock()
	for i := range msgs {
		if i%ctxCheckEvery == 0 && ctx.Err() != nil {
			b.sendErr = ctx.Err()
			break
		}
		if s.drops.Load() != b.fence.drops || s.nc.Stats().Reconnects != b.fence.reconnects {
			// The connection was lost or replaced: what went out on
			// the old one may be lost, so send nothing more until the
			// batches in flight are over (see the package
			// documentation).
			b.sendErr = errors.New("forward/jetstream: the connection was lost while publishing: the rest waits for the retry")
			break
		}
		if err := s.send(b, i, &msgs[i]); err != nil {
			b.sendErr = fmt.Errorf("forward/jetstream: publish: %w", err)
			break
		}
		b.sent++
	}
	if b.sent < len(msgs) {
		s.mu.Lock()
		for i := b.sent; i < len(msgs); i++ {
			if b.results[i].state == sent {
				b.results[i].state = unsent
				b.pending--
			}
		}
		s.mu.Unlock()
	}
	return b
}

// ctxCheckEvery is how many messages Send publishes between two looks at
// its context (each look may take a lock).
const ctxCheckEvery = 64

// send publishes message i of batch b.
func (s *Sink) send(b *batch, i int, m *forward.Message) error {
	subj, found := s.subjects[m.Ring.Name]
	if !found {
		subj = expand(s.cfg.Subject, m.Host, m.Ring.Name)
		s.subjects[m.Ring.Name] = subj
	}
	s.reply = append(append(s.reply[:0], s.prefix...), '.')
	s.reply = strconv.AppendUint(s.reply, b.num, 36)
	s.reply = append(s.reply, '.')
	s.reply = strconv.AppendUint(s.reply, uint64(i), 36)
	s.msg.Subject, s.msg.Reply, s.msg.Data = subj, string(s.reply), m.Data
	s.vID[0], s.vHost[0], s.vRing[0] = m.ID, m.Host, m.Ring.Name
	s.vPos[0] = strconv.FormatUint(m.Pos, 10)
	return s.nc.PublishMsg(&s.msg)
}

// Wait waits until every message of the batch sent is answered, the ack
// timeout passes, the connection is lost, or ctx is done, and says which
// were acknowledged (see forward.Batch).
func (b *batch) Wait(ctx context.Context) (forward.Result, error) {
	s := b.s
	waitErr := b.wait(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.inflight, b.num) // acknowledgements arriving from now on are late: ignored
	var res forward.Result
	var first error
	for _, r := range b.results {
		if first == nil {
			switch r.state {
			case ok:
				res.Acked++
				if r.dup {
					res.Duplicates++
				}
				continue
			case failed:
				first = r.err
			case sent:
				first = waitErr
			default:
				first = b.sendErr
			}
			continue
		}
		if r.state == ok && !r.dup {
			res.Reordered++
		}
	}
	return res, first
}

// wait waits for the answers to the messages sent; it returns why some are
// still unanswered.
func (b *batch) wait(ctx context.Context) error {
	s := b.s
	timer := time.NewTimer(s.cfg.AckTimeout)
	defer timer.Stop()
	for {
		s.mu.Lock()
		left := b.pending
		s.mu.Unlock()
		if left == 0 {
			return nil
		}
		if s.drops.Load() != b.fence.drops {
			return fmt.Errorf("forward/jetstream: the connection was lost with %d of %d messages not acknowledged", left, b.sent)
		}
		select {
		case <-b.acked:
		case <-timer.C:
			return fmt.Errorf("forward/jetstream: %d of %d messages not acknowledged within %v (stream %q unavailable?)", left, b.sent, s.cfg.AckTimeout, s.stream)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// onAck handles an acknowledgement (or refusal) from the stream.
func (s *Sink) onAck(m *nats.Msg) {
	rest := m.Subject[min(len(s.prefix)+1, len(m.Subject)):]
	dot := strings.IndexByte(rest, '.')
	if dot < 0 {
		return
	}
	num, err1 := strconv.ParseUint(rest[:dot], 36, 64)
	i, err2 := strconv.ParseUint(rest[dot+1:], 36, 32)
	if err1 != nil || err2 != nil {
		return
	}
	dup, err := parseAck(m)
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.inflight[num]
	if b == nil || i >= uint64(len(b.results)) || b.results[i].state != sent {
		return // late, for a batch given up
	}
	r := &b.results[i]
	r.dup, r.err = dup, err
	r.state = ok
	if err != nil {
		r.state = failed
	}
	if b.pending--; b.pending == 0 {
		b.wake()
	}
}

var (
	ackPrefix = []byte(`{"stream":`)
	ackError  = []byte(`"error"`)
	ackDup    = []byte(`"duplicate":true`)
)

// parseAck reads a publish acknowledgement: {"stream":"S","seq":N} with
// "duplicate":true for a copy of a stored message, or {"error":{...}}.
func parseAck(m *nats.Msg) (dup bool, err error) {
	if st := m.Header.Get("Status"); st != "" && len(m.Data) == 0 {
		if st == "503" {
			return false, errors.New("no stream answered (no responders): is JetStream up, and does a stream capture the subject?")
		}
		return false, fmt.Errorf("status %s %s", st, m.Header.Get("Description"))
	}
	if bytes.HasPrefix(m.Data, ackPrefix) && !bytes.Contains(m.Data, ackError) {
		return bytes.Contains(m.Data, ackDup), nil
	}
	var resp struct {
		Error *struct {
			Code        int    `json:"code"`
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if jerr := json.Unmarshal(m.Data, &resp); jerr != nil || resp.Error == nil {
		return false, fmt.Errorf("unreadable acknowledgement %q", m.Data)
	}
	return false, fmt.Errorf("the stream refused the message: %s (code %d, error %d)", resp.Error.Description, resp.Error.Code, resp.Error.ErrCode)
}
