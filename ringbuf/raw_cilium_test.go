//go:build ciliummain

package ringbuf_test

// cilium/ebpf main's RawReader in the RawReader suite, for a build against
// a checkout of that branch (see raw_suite_test.go): its Lease and ours
// through the same adapter.

import (
	"time"

	"github.com/cilium/ebpf"
	cilium "github.com/cilium/ebpf/ringbuf"
)

func init() {
	rawImpls = append(rawImpls, rawImpl{"cilium-main", func(m *ebpf.Map) (rawReader, error) {
		r, err := cilium.NewRawReader(m)
		if err != nil {
			return nil, err
		}
		c := &ciliumRaw{r: r}
		c.lease = func(l cilium.Lease) error { return c.fn(l) }
		return c, nil
	}, cilium.ErrFlushed})
}

type ciliumRaw struct {
	r     *cilium.RawReader
	fn    func(rawLease) error
	lease func(cilium.Lease) error
}

func (c *ciliumRaw) WithLease(fn func(rawLease) error) error {
	c.fn = fn
	return c.r.WithLease(c.lease)
}
func (c *ciliumRaw) SetDeadline(t time.Time) { c.r.SetDeadline(t) }
func (c *ciliumRaw) Flush() error            { return c.r.Flush() }
func (c *ciliumRaw) BufferSize() int         { return c.r.BufferSize() }
func (c *ciliumRaw) AvailableBytes() int     { return c.r.AvailableBytes() }
func (c *ciliumRaw) Close() error            { return c.r.Close() }
