// Package prometheus exports what a ringo Reader consumes and loses as
// Prometheus metrics, per ring: records and bytes consumed, records
// dropped (full ring), overwritten and abandoned, fill level and size; and
// the Reader's wake-ups.
//
//	rd, _ := ringo.NewReader(rings...)
//	reg.MustRegister(ringoprom.NewCollector(rd))
//
// Rings are labelled by name (a kernel map's name, a shared ring's name,
// or what WithName gave an in-process ring); RingName picks another label.
package prometheus

import (
	"fmt"

	prom "github.com/prometheus/client_golang/prometheus"
	"github.com/ringo-bpf/ringo"
)

// Collector is a prometheus.Collector over one Reader. Collecting never
// waits for the Reader's consumer: it reads counters the Reader publishes.
type Collector struct {
	rd       *ringo.Reader
	ringName func(ringo.Source) string

	records, bytes, dropped, droppedBytes, overwritten, abandoned *prom.Desc
	fill, size, wakeups                                           *prom.Desc
}

// Option configures a Collector.
type Option func(*Collector)

// RingName sets the ring label of each ring; the default is fmt.Sprint of
// the ring (its name).
func RingName(fn func(ringo.Source) string) Option { return func(c *Collector) { c.ringName = fn } }

// NewCollector returns a Collector of rd's rings. Metric names start with
// ringo_.
func NewCollector(rd *ringo.Reader, opts ...Option) *Collector {
	ring := []string{"ring"}
	c := &Collector{
		rd:           rd,
		ringName:     func(s ringo.Source) string { return fmt.Sprint(s) },
		records:      prom.NewDesc("ringo_records_consumed_total", "Records the reader consumed from the ring.", ring, nil),
		bytes:        prom.NewDesc("ringo_bytes_consumed_total", "Payload bytes the reader consumed from the ring.", ring, nil),
		dropped:      prom.NewDesc("ringo_records_dropped_total", "Records producers gave up on: refused by a full ring, or a waiting producer whose context ended, never a retry (kernel rings: counted by bpf/ringo.h's RINGO_DROP_COUNTER; absent when nothing counts them).", ring, nil),
		droppedBytes: prom.NewDesc("ringo_bytes_dropped_total", "Payload bytes of the dropped records.", ring, nil),
		overwritten:  prom.NewDesc("ringo_records_overwritten_total", "Committed records overwritten before the reader got to them (rings in overwrite mode).", ring, nil),
		abandoned:    prom.NewDesc("ringo_records_abandoned_total", "Records of a shared ring reserved by processes that died before committing them.", ring, nil),
		fill:         prom.NewDesc("ringo_ring_fill_ratio", "Share of the ring holding records not yet consumed (0 to 1).", ring, nil),
		size:         prom.NewDesc("ringo_ring_size_bytes", "Size of the ring's data area.", ring, nil),
		wakeups:      prom.NewDesc("ringo_reader_wakeups_total", "Times the reader woke from waiting for records.", nil, nil),
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Describe sends the descriptors of every metric.
func (c *Collector) Describe(ch chan<- *prom.Desc) {
	for _, d := range []*prom.Desc{c.records, c.bytes, c.dropped, c.droppedBytes, c.overwritten, c.abandoned, c.fill, c.size, c.wakeups} {
		ch <- d
	}
}

// Collect sends the current values. A ring whose loss could not be read
// (a kernel drop counter that went away) gets an invalid metric that says
// why, and its other metrics still go out.
func (c *Collector) Collect(ch chan<- prom.Metric) {
	stats, err := c.rd.Stats()
	if err != nil {
		ch <- prom.NewInvalidMetric(c.dropped, err)
	}
	for _, s := range stats {
		name := c.ringName(s.Ring)
		counter := func(d *prom.Desc, v uint64) {
			ch <- prom.MustNewConstMetric(d, prom.CounterValue, float64(v), name)
		}
		counter(c.records, s.Records)
		counter(c.bytes, s.Bytes)
		if s.Counted {
			counter(c.dropped, s.Dropped)
			counter(c.droppedBytes, s.DroppedBytes)
		}
		counter(c.overwritten, s.Overwritten)
		counter(c.abandoned, s.Abandoned)
		fill := 0.0
		if s.Size > 0 {
			fill = float64(min(s.AvailData, uint64(s.Size))) / float64(s.Size)
		}
		ch <- prom.MustNewConstMetric(c.fill, prom.GaugeValue, fill, name)
		ch <- prom.MustNewConstMetric(c.size, prom.GaugeValue, float64(s.Size), name)
	}
	ch <- prom.MustNewConstMetric(c.wakeups, prom.CounterValue, float64(c.rd.Wakeups()))
}
