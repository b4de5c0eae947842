package prometheus_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	prom "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/ringo-bpf/ringo"
	"github.com/ringo-bpf/ringo/internal/waitfor"
	ringoprom "github.com/ringo-bpf/ringo/prometheus"
)

// TestScrape serves the collector over HTTP on loopback and scrapes it:
// records and bytes consumed, drops of a full ring, fill level and size.
func TestScrape(t *testing.T) {
	r, err := ringo.New(4096, ringo.WithName("events"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rd, err := ringo.NewReader(r)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	// 10 records read, then the ring filled with 56-byte records until
	// 3 are refused.
	for range 10 {
		r.Output(make([]byte, 24), 0)
	}
	rctx, rcancel := context.WithTimeout(context.Background(), waitfor.Short)
	defer rcancel()
	for range 10 {
		if _, err := rd.Read(rctx); err != nil {
			t.Fatal(err)
		}
	}
	refused := 0
	for refused < 3 {
		if r.Output(make([]byte, 56), 0) != nil {
			refused++
		}
	}

	reg := prom.NewPedanticRegistry()
	reg.MustRegister(ringoprom.NewCollector(rd))
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError}))
	defer srv.Close()
	scrape := func() string {
		t.Helper()
		client := http.Client{Timeout: 5 * time.Second}
		resp, err := client.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("scrape: %s\n%s", resp.Status, body)
		}
		return string(body)
	}
	body := scrape()
	avail, err := r.Query(ringo.AvailData)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`ringo_records_consumed_total{ring="events"} 10`,
		`ringo_bytes_consumed_total{ring="events"} 240`,
		`ringo_records_dropped_total{ring="events"} 3`,
		`ringo_bytes_dropped_total{ring="events"} 168`,
		`ringo_records_overwritten_total{ring="events"} 0`,
		`ringo_ring_size_bytes{ring="events"} 4096`,
		`ringo_ring_fill_ratio{ring="events"} ` + ftoa(float64(avail)/4096),
		`ringo_reader_wakeups_total `,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("scrape lacks %q:\n%s", want, body)
		}
	}

	// Collecting does not wait for a Read blocked on the empty ring.
	n, err := rd.Consume(func(ringo.Record) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	base, cancel := context.WithCancel(context.Background())
	defer cancel()
	waiting := make(chan struct{})
	ctx := &waitingCtx{Context: base, waiting: waiting}
	done := make(chan error, 1)
	go func() { _, err := rd.Read(ctx); done <- err }()
	// Scrape once the Read waits, holding the Reader's consumer lock (not
	// after a sleep that a slow machine may outlast).
	waitfor.Closed(t, waiting, waitfor.Short, "Read to wait on the empty ring")
	want := fmt.Sprintf(`ringo_records_consumed_total{ring="events"} %d`, 10+n)
	if body := scrape(); !strings.Contains(body, want) {
		t.Errorf("scrape during a blocked Read lacks %q:\n%s", want, body)
	}
	select {
	case err := <-done:
		t.Fatalf("the Read returned %v during the scrape: the scrape did not run while it blocked", err)
	default:
	}
	cancel()
	if err := waitfor.Recv(t, done, waitfor.Short, "the cancelled Read to return"); !errors.Is(err, context.Canceled) {
		t.Errorf("the blocked Read returned %v", err)
	}
}

// waitingCtx closes waiting the first time its deadline is asked for: a
// Reader asks as it starts to wait for records (after it has found none),
// with its consumer lock held until the wait ends.
type waitingCtx struct {
	context.Context
	once    sync.Once
	waiting chan struct{}
}

func (c *waitingCtx) Deadline() (time.Time, bool) {
	c.once.Do(func() { close(c.waiting) })
	return c.Context.Deadline()
}

func ftoa(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }
