// Package forward sends the records of rings to a distributed message
// engine, end to end at least once: a ring's consumer position moves past a
// record only after the engine has acknowledged it, so neither a crash of
// the forwarder nor an outage of the engine loses a record that reached the
// ring. Each message carries an ID made of the host, the ring's identity
// and the record's position, by which the engine (or any consumer) drops
// the copies that a retry or a restart sends again.
//
// The engine is a Sink. Package forward/jetstream is the NATS JetStream
// sink; another engine (Kafka, say) is another implementation of Sink.
//
// The loop: take a batch of records from the Reader (explicit release
// mode, see ringo.Reader.SetExplicitRelease), publish it, wait for the
// acknowledgements, release the acknowledged prefix. If publishing fails,
// rewind the Reader to the first record not acknowledged, wait (with
// exponential backoff) and publish again from there. While the engine is
// unreachable the rings fill, and their producers' refusals are counted as
// drops, as for any consumer that falls behind (ringo.LossOf).
package forward

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/ringo-bpf/ringo"
)

// Message is one record as a Sink publishes it.
type Message struct {
	// ID identifies the record among all records of all rings of all hosts
	// for de-duplication: RingKey(Host, Ring), a dot, and Pos in base 36.
	// It is short because engines keep every ID of their de-duplication
	// window in memory, and hash each one.
	ID string
	// Host is the forwarder's host name; Ring is the identity of the ring
	// the record came from; Pos is the position of its header there.
	Host string
	Ring ringo.Identity
	Pos  uint64
	// Data is the payload, valid until the Wait of the Batch that sent
	// it returns.
	Data []byte
}

// Result is what happened to a batch a Sink published.
type Result struct {
	// Acked is how many messages from the start of the batch the engine
	// acknowledged: stored durably, or recognised as a copy of one it
	// stored before.
	Acked int
	// Duplicates is how many of the acknowledged were such copies.
	Duplicates int
	// Reordered is how many messages after the first one not
	// acknowledged the engine stored anyway: out of their ring's order,
	// unless the unacknowledged one was stored too and only its
	// acknowledgement was lost. (They are sent again after it and
	// dropped then as duplicates, so each is stored once.) Sinks avoid
	// this where the engine lets them; see the sink's documentation.
	Reordered int
}

// A Sink publishes batches of messages to a message engine. Batches are
// pipelined: a Forwarder sends the next batch while it waits for the
// acknowledgements of the one before, at most two at a time.
type Sink interface {
	// Send starts publishing msgs, in order, after the messages of the
	// batches sent before, and returns at once or once they are handed
	// to the engine's connection. msgs and their Data stay valid until
	// the batch's Wait returns. A failure to send is reported by Wait.
	Send(ctx context.Context, msgs []Message) Batch
	// Close releases the sink's connection.
	Close() error
}

// A Batch is a batch of messages being published.
type Batch interface {
	// Wait waits until the engine has acknowledged or refused each
	// message sent, or ctx is done. It reports how many from the start
	// were acknowledged and, when not all of them were, the error that
	// stopped the rest.
	Wait(ctx context.Context) (Result, error)
}

// Config tunes a Forwarder. The zero value works.
type Config struct {
	// Host names this machine in message IDs and headers; default the
	// host name.
	Host string
	// BatchRecords and BatchBytes bound a batch: at most this many
	// records, and payload bytes (a larger single record goes alone).
	// Defaults 4096 records, 4 MiB.
	BatchRecords int
	BatchBytes   int
	// MinBackoff and MaxBackoff bound the wait before publishing again
	// after a failure, doubling from MinBackoff; defaults 100 ms and 5 s.
	MinBackoff, MaxBackoff time.Duration
	// Logger receives failures, retries and recoveries; default
	// slog.Default().
	Logger *slog.Logger
}

func (c *Config) defaults() error {
	if c.Host == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("forward: no host name given and none found: %w", err)
		}
		c.Host = h
	}
	if c.BatchRecords <= 0 {
		c.BatchRecords = 4096
	}
	if c.BatchBytes <= 0 {
		c.BatchBytes = 4 << 20
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = 100 * time.Millisecond
	}
	if c.MaxBackoff < c.MinBackoff {
		c.MaxBackoff = max(5*time.Second, c.MinBackoff)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Stats counts what a Forwarder did.
type Stats struct {
	// Forwarded is how many records the engine acknowledged and stored;
	// Duplicates how many more acknowledgements were for copies it had.
	Forwarded, Duplicates uint64
	// Bytes is the payload bytes of the acknowledged records.
	Bytes uint64
	// Batches is how many batches were published; Failures how many of
	// them failed (in part or in all), each followed by a retry.
	Batches, Failures uint64
	// Reordered counts records the engine stored out of ring order (see
	// Result.Reordered).
	Reordered uint64
	// LastError is the last failure, "" if none.
	LastError string
}

// Forwarder moves records from a Reader's rings to a Sink.
type Forwarder struct {
	rd   *ringo.Reader
	sink Sink
	cfg  Config

	mu    sync.Mutex
	stats Stats

	bufs  [2]batchBuf // the batch in flight and the next one
	id    []byte      // scratch for message IDs
	done  []ringo.Source
	rings map[ringo.Source]ringInfo
	// last and lastInfo: the ring of the record before, which the next
	// record most likely shares (a map lookup less per record).
	last     ringo.Source
	lastInfo ringInfo
	rec      ringo.Record // ReadInto's reused record
}

// batchBuf is one batch: the records as handed out (for Release), the
// messages, and one buffer holding their payloads.
type batchBuf struct {
	recs  []ringo.Record
	msgs  []Message
	arena []byte
	sent  Batch
}

// ringInfo is what the Forwarder keeps of each ring it has seen.
type ringInfo struct {
	id  ringo.Identity
	key string // RingKey
}

// RingKey is the first part of the message IDs of the records of a ring:
// 11 characters (base64url of 64 bits of SHA-256) of the host and the
// ring's identity, so that the IDs of different rings, hosts and ring
// incarnations never meet.
func RingKey(host string, ring ringo.Identity) string {
	sum := sha256.Sum256([]byte(host + "/" + ring.Kind + "/" + ring.Name + "/" + ring.Incarnation))
	return base64.RawURLEncoding.EncodeToString(sum[:8])
}

// New returns a Forwarder of the records of rd's rings to sink. It turns on
// rd's explicit release: the Forwarder releases records as the engine
// acknowledges them. rd must not be used by anything else while the
// Forwarder runs.
func New(rd *ringo.Reader, sink Sink, cfg Config) (*Forwarder, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if err := rd.SetExplicitRelease(true); err != nil {
		return nil, fmt.Errorf("forward: %w", err)
	}
	return &Forwarder{rd: rd, sink: sink, cfg: cfg, rings: make(map[ringo.Source]ringInfo)}, nil
}

// Stats returns what the Forwarder has done so far; any goroutine may call
// it.
func (f *Forwarder) Stats() Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stats
}

// Run forwards records until ctx is done, then returns ctx.Err(); records
// handed out and not acknowledged by then stay in their rings. It returns
// another error only if the Reader fails (ringo.ErrClosed, a corrupt ring).
// A failing engine is not such an error: Run logs it and tries again.
//
// While one batch waits for its acknowledgements the next is sent, so
// that the engine always has work; a batch is released only after every
// batch before it was acknowledged whole.
func (f *Forwarder) Run(ctx context.Context) error {
	backoff := time.Duration(0)
	var prev *batchBuf // in flight
	for turn := 0; ; turn++ {
		cur := &f.bufs[turn%2]
		// Wait for records only when nothing is in flight.
		if err := f.fill(ctx, cur, prev == nil); err != nil {
			if prev != nil {
				prev.sent.Wait(ctx)
			}
			return err
		}
		if len(cur.msgs) > 0 {
			cur.sent = f.sink.Send(ctx, cur.msgs)
		}
		if prev == nil {
			prev = cur
			continue
		}
		res, err := prev.sent.Wait(ctx)
		stopping := err != nil && ctx.Err() != nil
		if stopping {
			// Not a failure: keep what was acknowledged, leave the
			// rest in the ring, end the batch after it at once.
			err = nil
			if len(cur.msgs) > 0 {
				cur.sent.Wait(ctx)
			}
		}
		f.account(prev, res, err)
		if rerr := f.release(prev, res.Acked); rerr != nil {
			return rerr
		}
		if stopping {
			return ctx.Err()
		}
		if err == nil {
			if backoff > 0 {
				f.cfg.Logger.Info("forward: publishing again", "after", backoff)
			}
			backoff = 0
			prev = nil
			if len(cur.msgs) > 0 {
				prev = cur
			}
			continue
		}
		// prev failed: cur, sent after it, goes again too. What of it the
		// engine stored anyway came before prev's failed records.
		if len(cur.msgs) > 0 {
			cres, _ := cur.sent.Wait(ctx)
			cres.Reordered += cres.Acked - cres.Duplicates
			cres.Acked, cres.Duplicates = 0, 0
			f.account(cur, cres, errors.New("batch after a failed one"))
		}
		prev = nil
		if rerr := f.rd.Rewind(); rerr != nil {
			return fmt.Errorf("forward: %w", rerr)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		backoff = min(max(2*backoff, f.cfg.MinBackoff), f.cfg.MaxBackoff)
		f.cfg.Logger.Warn("forward: publish failed; records stay in the ring", "err", err,
			"acked", res.Acked, "of", len(f.bufs[0].msgs)+len(f.bufs[1].msgs), "retry_in", backoff)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
	}
}

// release releases the first n records of batch b: for each ring, the last
// of them from that ring.
func (f *Forwarder) release(b *batchBuf, n int) error {
	done := f.done[:0]
	for i := n - 1; i >= 0; i-- {
		r := b.recs[i]
		if slices.Contains(done, r.Source) {
			continue
		}
		done = append(done, r.Source)
		if err := f.rd.Release(r); err != nil {
			return fmt.Errorf("forward: %w", err)
		}
	}
	f.done = done[:0]
	return nil
}

// fill makes batch b: if wait, it waits for a record first; then it takes
// what else is there, up to the batch limits.
func (f *Forwarder) fill(ctx context.Context, b *batchBuf, wait bool) error {
	b.recs, b.msgs, b.arena, b.sent = b.recs[:0], b.msgs[:0], b.arena[:0], nil
	if wait {
		// Block for the first record (a copy, into a reused buffer).
		if err := f.rd.ReadInto(ctx, &f.rec); err != nil {
			return err
		}
		f.add(b, f.rec)
	}
	_, err := f.rd.ConsumeN(f.cfg.BatchRecords-len(b.recs), func(r ringo.Record) error {
		if len(b.recs) > 0 && len(b.arena)+len(r.Data) > f.cfg.BatchBytes {
			return ringo.Stop // the next batch's first record
		}
		f.add(b, r)
		return nil
	})
	if err != nil {
		return err
	}
	// The arena may have moved while it grew: point the messages at
	// their bytes now.
	off := 0
	for i := range b.msgs {
		n := len(b.recs[i].Data)
		b.msgs[i].Data = b.arena[off : off+n : off+n]
		off += n
	}
	return nil
}

// add appends a record to batch b, copying its payload: a view would do
// for most rings (unreleased records stay put), but not for those in
// overwrite mode, whose producers do not wait for the consumer.
func (f *Forwarder) add(b *batchBuf, r ringo.Record) {
	ri := f.lastInfo
	if r.Source != f.last {
		var ok bool
		if ri, ok = f.rings[r.Source]; !ok {
			ri.id = ringo.Identify(r.Source)
			ri.key = RingKey(f.cfg.Host, ri.id)
			f.rings[r.Source] = ri
		}
		f.last, f.lastInfo = r.Source, ri
	}
	b.arena = append(b.arena, r.Data...)
	f.id = append(append(f.id[:0], ri.key...), '.')
	f.id = strconv.AppendUint(f.id, r.Pos, 36)
	// Kept for Release, and for the length of its bytes in the arena.
	b.recs = append(b.recs, r)
	b.msgs = append(b.msgs, Message{ID: string(f.id), Host: f.cfg.Host, Ring: ri.id, Pos: r.Pos})
}

// account adds the outcome of batch b to the stats.
func (f *Forwarder) account(b *batchBuf, res Result, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := &f.stats
	s.Batches++
	s.Duplicates += uint64(res.Duplicates)
	s.Forwarded += uint64(res.Acked - res.Duplicates)
	for _, m := range b.msgs[:res.Acked] {
		s.Bytes += uint64(len(m.Data))
	}
	s.Reordered += uint64(res.Reordered)
	if err != nil {
		s.Failures++
		s.LastError = err.Error()
	}
	if res.Reordered > 0 {
		f.cfg.Logger.Warn("forward: the engine stored records after one it refused, out of ring order", "records", res.Reordered)
	}
}
