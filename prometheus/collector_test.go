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
	"testing"
	"time"

	prom "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/ringo-bpf/ringo"
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
	for range 10 {
		if _, err := rd.Read(context.Background()); err != nil {
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
	avail := r.Positions().Avail()
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
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := rd.Read(ctx); done <- err }()
	time.Sleep(50 * time.Millisecond) // let it block
	want := fmt.Sprintf(`ringo_records_consumed_total{ring="events"} %d`, 10+n)
	if body := scrape(); !strings.Contains(body, want) {
		t.Errorf("scrape during a blocked Read lacks %q:\n%s", want, body)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("the blocked Read returned %v", err)
	}
}

func ftoa(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }
