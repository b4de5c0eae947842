package ringo

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// Release, Rewind and Held work from inside a Consume callback and a
// Records loop (they used to wait for the lock their caller held), and a
// record's extent travels with it, not in the length of its view.
func TestReleaseInsideCallbacks(t *testing.T) {
	r := newRing(t, 4096)
	rd := newReader(t, r)
	if err := rd.SetExplicitRelease(true); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"one", "two", "three", "four"} {
		r.Output([]byte(s), 0)
	}
	end := r.Positions().Producer
	bounded(t, "Release in a Consume callback", func() {
		n, err := rd.ConsumeN(2, func(rec Record) error {
			if rd.Held() != 1 {
				t.Errorf("Held() in the callback = %d, want 1 (the record in hand)", rd.Held())
			}
			rec.Data = rec.Data[:1] // a trimmed view releases the whole record
			return rd.Release(rec)
		})
		if n != 2 || err != nil {
			t.Errorf("ConsumeN(2) = %d, %v", n, err)
		}
	})
	if cons := r.Positions().Consumer; cons != 2*recordSize(3) {
		t.Fatalf("consumer_pos %d after releasing two trimmed records, want %d", cons, 2*recordSize(3))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	bounded(t, "Release and Rewind in a Records loop", func() {
		var seen []string
		rewound := false
		for rec, err := range rd.Records(ctx) {
			if err != nil {
				t.Error(err)
				return
			}
			seen = append(seen, string(rec.Data))
			if !rewound {
				rewound = true
				if err := rd.Rewind(); err != nil { // hands "three" out again
					t.Error(err)
				}
				continue
			}
			if err := rd.Release(rec); err != nil {
				t.Error(err)
			}
			if string(rec.Data) == "four" {
				break
			}
		}
		if strings.Join(seen, " ") != "three three four" {
			t.Errorf("records in the loop: %q", seen)
		}
	})
	if cons := r.Positions().Consumer; cons != end {
		t.Fatalf("consumer_pos %d after releasing everything, want %d", cons, end)
	}
}

// What a callback may not do fails at once instead of hanging; a callback
// that fails or returns Stop leaves its record in the ring.
func TestConsumeCallbackRules(t *testing.T) {
	r := newRing(t, 4096)
	rd := newReader(t, r)
	for _, s := range []string{"a", "b", "c"} {
		r.Output([]byte(s), 0)
	}
	bounded(t, "Consume inside Consume", func() {
		_, err := rd.Consume(func(Record) error {
			_, err := rd.Consume(func(Record) error { return nil })
			return err
		})
		if err == nil || !strings.Contains(err.Error(), "inside a Consume callback") {
			t.Errorf("Consume inside a callback: %v", err)
		}
	})
	bounded(t, "Read inside a Records loop", func() {
		for _, err := range rd.Records(context.Background()) {
			if err != nil {
				t.Error(err)
				return
			}
			_, err := rd.Read(context.Background())
			if err == nil || !strings.Contains(err.Error(), "inside a Consume callback or a Records loop") {
				t.Errorf("Read inside a Records loop: %v", err)
			}
			break // consumes "a"
		}
	})
	var got []string
	n, err := rd.Consume(func(rec Record) error {
		if string(rec.Data) == "c" {
			return Stop
		}
		got = append(got, string(rec.Data))
		return nil
	})
	if n != 1 || err != nil || len(got) != 1 || got[0] != "b" {
		t.Fatalf("Consume stopped at c: %d, %v, %q", n, err, got)
	}
	boom := errors.New("boom")
	if _, err := rd.Consume(func(Record) error { return boom }); err != boom {
		t.Fatalf("a failing callback: %v", err)
	}
	rec, err := rd.Read(context.Background())
	if err != nil || string(rec.Data) != "c" {
		t.Fatalf("after Stop and a failure, the record is still there: %q, %v", rec.Data, err)
	}
}
