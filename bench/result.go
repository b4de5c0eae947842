package bench

// Report is what `ringo bench --json` prints: one object, a contract that
// other tools parse.
type Report struct {
	Machine Machine  `json:"machine"`
	Results []Result `json:"results"`
}

// Machine describes where the suite ran.
type Machine struct {
	Kernel    string `json:"kernel"`     // uname -r
	CPU       string `json:"cpu"`        // model name from /proc/cpuinfo
	CPUs      int    `json:"cpus"`       // online CPUs
	GoVersion string `json:"go_version"` // runtime.Version()
	Libbpf    string `json:"libbpf"`     // libbpf version the C driver was built against, "" if none
	Quick     bool   `json:"quick"`      // the --quick run
	Time      string `json:"time"`       // RFC 3339, when the run started
}

// Scenario names, as the JSON carries them.
const (
	Drain         = "drain"          // pre-filled kernel ring consumed to empty
	Stream        = "stream"         // BPF producer and consumer at once, adaptive wake-ups
	StreamSampled = "stream_sampled" // the same, NO_WAKEUP except FORCE_WAKEUP every k-th record
	PerfBuf       = "perfbuf"        // the same events through a perf buffer and a ring buffer
	UserSPSC      = "user_spsc"      // user-space ring, one producer goroutine, one consumer
	UserMPSC      = "user_mpsc"      // user-space ring, two producer goroutines, one consumer
	UserRing      = "user_ring"      // user space to kernel: records/s a BPF program drains
	StreamPaced   = "stream_paced"   // stream with the producer paced to fixed rates: CPU per record at each
	UserPaced     = "user_paced"     // user_spsc with the producer paced to fixed rates
)

// Scenarios lists every scenario, in the order runs and reports take them.
func Scenarios() []string {
	return []string{Drain, Stream, StreamSampled, StreamPaced, PerfBuf, UserSPSC, UserMPSC, UserPaced, UserRing}
}

// Implementation names, as the JSON carries them.
const (
	Ringo          = "ringo"
	RingoBatch     = "ringo_batch" // Reader.ConsumeBatch
	Libbpf         = "libbpf"
	CiliumRead     = "cilium_read"
	CiliumReadInto = "cilium_readinto"
	// DropinRead and DropinReadInto are the drop-in for cilium/ebpf's
	// ringbuf package (github.com/ringo-bpf/ringo/ringbuf), backed by
	// ringo's Reader.
	DropinRead     = "dropin_read"
	DropinReadInto = "dropin_readinto"
	CiliumPerf     = "cilium_perf"
	Chan           = "chan"
	// FloorCall is the drain's floor (floor.go): the least a reader
	// handing each record to a Go function costs.
	FloorCall = "floor_call"
)

// Result is one implementation in one scenario at one record size.
type Result struct {
	Scenario       string  `json:"scenario"`
	Impl           string  `json:"impl"`
	RecordSize     int     `json:"record_size"`       // payload bytes per record
	Records        uint64  `json:"records"`           // records the consumer read (and checksummed)
	RecordsPerSec  float64 `json:"records_per_sec"`   // Records / wall time
	NsPerRecord    float64 `json:"ns_per_record"`     // wall ns per record
	CPUNsPerRecord float64 `json:"cpu_ns_per_record"` // consumer thread CPU ns per record
	// OtherCPUNsPerRecord is the CPU the process's other threads used
	// meanwhile, neither the consumer's nor the producer's, per record:
	// the Go runtime working for a Go reader (its monitor thread, threads
	// woken to run goroutines), which CPUNsPerRecord leaves out. Absent
	// where not measured: libbpf (its own single-threaded process), and
	// producers not pinned to a thread (user_mpsc).
	OtherCPUNsPerRecord float64 `json:"other_cpu_ns_per_record,omitempty"`
	AllocsPerRecord     float64 `json:"allocs_per_record"` // Go heap allocations per record (0 for C)
	Drops               uint64  `json:"drops"`             // records the producer could not write (full)
	// WakeupsPer1000 is how many times the consumer was woken from a sleep
	// per 1000 records (streaming scenarios); -1 where the implementation
	// does not expose it.
	WakeupsPer1000 float64 `json:"wakeups_per_1000"`
	// Rate is the records a second the producer was paced to (the
	// stream_paced scenario), 0 for as fast as it goes.
	Rate float64 `json:"rate,omitempty"`
	// Note says what the number means where it differs from the above
	// (for example the wake-up sampling period).
	Note string `json:"note,omitempty"`
}
