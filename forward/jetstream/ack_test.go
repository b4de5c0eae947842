package jetstream

import (
	"bytes"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
)

// FuzzParseAck: acknowledgements come from the network. Whatever their
// bytes, parsing never panics, and only a stream's success reply, without
// an error in it, counts as stored.
func FuzzParseAck(f *testing.F) {
	for _, s := range []string{
		`{"stream":"S","seq":5}`,
		`{"stream":"S","seq":5,"duplicate":true}`,
		`{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"}}`,
		`{"stream":"S","error":{"code":400}}`,
		``, `{`, `null`, `{"error":null}`,
	} {
		f.Add([]byte(s), "")
		f.Add([]byte(s), "503")
	}
	f.Fuzz(func(t *testing.T, data []byte, status string) {
		m := &nats.Msg{Data: data}
		if status != "" {
			m.Header = nats.Header{"Status": {status}}
		}
		dup, err := parseAck(m)
		if err == nil {
			if !bytes.HasPrefix(data, ackPrefix) || bytes.Contains(data, ackError) {
				t.Fatalf("%q (status %q) taken as stored", data, status)
			}
		} else if dup {
			t.Fatalf("%q: an error and a duplicate", data)
		}
	})
}

// Acknowledgements to subjects that are not a batch's, or for messages it
// did not send, change nothing.
func TestStrayAcks(t *testing.T) {
	s := &Sink{prefix: "_INBOX.x", inflight: map[uint64]*batch{}}
	b := &batch{s: s, num: 3, results: make([]result, 2), acked: make(chan struct{}, 1)}
	b.results[0].state, b.pending = sent, 1
	s.inflight[3] = b
	ack := []byte(`{"stream":"S","seq":1}`)
	for _, subj := range []string{"_INBOX.x", "_INBOX.x.", "_INBOX.x.3", "_INBOX.x.3.zz", "_INBOX.x.4.0", "_INBOX.x.3.1", "_INBOX.x.3.9", strings.Repeat("a", 3)} {
		s.onAck(&nats.Msg{Subject: subj, Data: ack})
	}
	if b.pending != 1 || b.results[0].state != sent || b.results[1].state != unsent {
		t.Fatalf("stray acknowledgements changed the batch: pending %d, results %+v", b.pending, b.results)
	}
	s.onAck(&nats.Msg{Subject: "_INBOX.x.3.0", Data: ack})
	if b.pending != 0 || b.results[0].state != ok {
		t.Fatalf("the right acknowledgement was not taken: pending %d, results %+v", b.pending, b.results)
	}
	s.onAck(&nats.Msg{Subject: "_INBOX.x.3.0", Data: ack}) // again
	if b.pending != 0 {
		t.Fatalf("a repeated acknowledgement counted twice: pending %d", b.pending)
	}
}
