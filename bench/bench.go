// Package bench is ringo's benchmark suite: ringo side by side with
// libbpf (a small C driver), cilium/ebpf's ringbuf and perf readers and Go
// channels, each reading the records of the same BPF producer (driven by
// BPF_PROG_TEST_RUN, looping with bpf_loop) and checksumming them. `ringo
// bench` runs it; the Benchmark functions of its tests cover the same code
// for profiling.
package bench

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Config says what to run.
type Config struct {
	// Quick is the short run (under 2 minutes on 2 cores): smaller rings
	// and fewer records.
	Quick bool
	// Sizes are the record sizes; default 16, 64, 256 and 1024 bytes.
	Sizes []int
	// Scenarios to run (names as in Result.Scenario); default all.
	Scenarios []string
	// Progress receives a line per measurement; nil for none.
	Progress io.Writer
	// WorkDir is where the libbpf driver is built; default a temporary
	// directory, removed at the end.
	WorkDir string
	// PinDir is the bpffs directory the libbpf driver finds the maps in;
	// default /sys/fs/bpf.
	PinDir string
}

// plan is how big each scenario runs.
type plan struct {
	drainRing, streamRing, userRing int
	streamRecords                   uint64
	userRecords                     int
	sampleEvery                     uint64
	pacedSeconds                    float64 // how long each paced run lasts
}

func (c Config) plan() plan {
	if c.Quick {
		return plan{drainRing: 32 << 20, streamRing: 4 << 20, userRing: 4 << 20, streamRecords: 1 << 20, userRecords: 1 << 20, sampleEvery: 256, pacedSeconds: 0.2}
	}
	return plan{drainRing: 256 << 20, streamRing: 4 << 20, userRing: 4 << 20, streamRecords: 4 << 20, userRecords: 4 << 20, sampleEvery: 256, pacedSeconds: 0.5}
}

// Run runs the suite. Measurements that fail (an implementation that
// read wrong records, a baseline that could not be built) are left out of
// the report and returned, joined, as the error, with the rest of the
// report.
func Run(cfg Config) (Report, error) {
	rep := Report{Machine: machine(cfg.Quick)}
	if len(cfg.Sizes) == 0 {
		cfg.Sizes = []int{16, 64, 256, 1024}
	}
	for _, s := range cfg.Sizes {
		if s < 16 || s%8 != 0 || s > 4096 {
			return rep, fmt.Errorf("bench: record size %d: sizes must be multiples of 8 from 16 to 4096", s)
		}
	}
	if len(cfg.Scenarios) == 0 {
		cfg.Scenarios = Scenarios()
	}
	if cfg.PinDir == "" {
		cfg.PinDir = "/sys/fs/bpf"
	}
	// The processor first: every figure below is this machine's.
	m := rep.Machine
	fmt.Fprintf(progress(cfg), "ringo bench: processor %s (%d CPUs), kernel %s, %s\n", orUnknown(m.CPU), m.CPUs, orUnknown(m.Kernel), orUnknown(m.GoVersion))
	if runtime.NumCPU() < 2 {
		fmt.Fprintf(progress(cfg), "warning: one CPU: producer and consumer share it, streaming numbers mean little\n")
	}
	var errs []error
	var lib *driver
	if wantsLibbpf(cfg.Scenarios) {
		dir := cfg.WorkDir
		if dir == "" {
			d, err := os.MkdirTemp("", "ringo-bench-")
			if err != nil {
				return rep, err
			}
			defer os.RemoveAll(d)
			dir = d
		}
		var err error
		if lib, err = buildDriver(dir, cfg.PinDir); err != nil {
			errs = append(errs, err)
			fmt.Fprintf(progress(cfg), "libbpf baseline left out: %v\n", err)
		}
	}
	p := cfg.plan()
	jobs := cfg.jobs(p, lib)
	start := time.Now()
	for i, j := range jobs {
		res, err := j.run()
		if err != nil {
			err = fmt.Errorf("%s %s %d B: %w", j.scenario, j.impl, j.size, err)
			errs = append(errs, err)
			fmt.Fprintf(progress(cfg), "[%d/%d] %v\n", i+1, len(jobs), err)
			continue
		}
		rep.Results = append(rep.Results, res)
		fmt.Fprintf(progress(cfg), "[%d/%d] %-14s %-15s %5d B  %8.2f M rec/s  %7.1f ns/rec  %7.1f cpu ns/rec  drops %d  (%s)\n",
			i+1, len(jobs), j.scenario, j.impl, j.size, res.RecordsPerSec/1e6, res.NsPerRecord, res.CPUNsPerRecord, res.Drops, time.Since(start).Round(time.Second))
	}
	if lib != nil {
		rep.Machine.Libbpf = lib.version
	}
	return rep, errors.Join(errs...)
}

func progress(cfg Config) io.Writer {
	if cfg.Progress == nil {
		return io.Discard
	}
	return cfg.Progress
}

func wantsLibbpf(scenarios []string) bool {
	for _, s := range scenarios {
		switch s {
		case Drain, Stream, StreamSampled, StreamPaced, UserRing:
			return true
		}
	}
	return false
}

// job is one measurement.
type job struct {
	scenario, impl string
	size           int
	run            func() (Result, error)
}

// jobs lists the measurements of cfg, scenario by scenario, size by size.
func (cfg Config) jobs(p plan, lib *driver) []job {
	var jobs []job
	add := func(scenario, impl string, size int, run func() (Result, error)) {
		if impl == Libbpf && lib == nil {
			return
		}
		jobs = append(jobs, job{scenario, impl, size, run})
	}
	for _, sc := range cfg.Scenarios {
		switch sc {
		case StreamPaced:
			for _, rate := range pacedRates {
				for _, impl := range pacedImpls {
					add(sc, impl, pacedSize, func() (Result, error) {
						return stream(sc, impl, pacedSize, p.streamRing, feed{count: pacedCount(rate, p.pacedSeconds), rate: rate}, lib)
					})
				}
			}
			continue
		case UserPaced:
			for _, rate := range pacedRates {
				add(sc, Ringo, pacedSize, func() (Result, error) {
					return userRingo(sc, 1, pacedSize, p.userRing, int(pacedCount(rate, p.pacedSeconds)), rate)
				})
				add(sc, Chan, pacedSize, func() (Result, error) {
					return userChan(sc, 1, pacedSize, p.userRing, int(pacedCount(rate, p.pacedSeconds)), rate)
				})
			}
			continue
		}
		for _, size := range cfg.Sizes {
			switch sc {
			case Drain:
				for _, impl := range []string{Ringo, RingoBatch, Libbpf, CiliumRead, CiliumReadInto, DropinRead, DropinReadInto, FloorCall} {
					add(sc, impl, size, func() (Result, error) { return drain(impl, size, p.drainRing, lib) })
				}
			case Stream, StreamSampled:
				every := uint64(0)
				if sc == StreamSampled {
					every = p.sampleEvery
				}
				for _, impl := range []string{Ringo, RingoBatch, Libbpf, CiliumRead, CiliumReadInto, DropinRead, DropinReadInto} {
					add(sc, impl, size, func() (Result, error) {
						return stream(sc, impl, size, p.streamRing, feed{count: p.streamRecords, every: every}, lib)
					})
				}
			case PerfBuf:
				add(sc, Ringo, size, func() (Result, error) {
					r, err := stream(sc, Ringo, size, p.streamRing, feed{count: p.streamRecords, how: howOutput}, lib)
					r.Note = "ring buffer, bpf_ringbuf_output"
					return r, err
				})
				add(sc, CiliumPerf, size, func() (Result, error) {
					r, err := stream(sc, CiliumPerf, size, p.streamRing, feed{count: p.streamRecords, how: howPerf}, lib)
					r.Note = "perf buffer of the same size per CPU, bpf_perf_event_output, ReadInto"
					return r, err
				})
			case UserSPSC, UserMPSC:
				producers := 1
				if sc == UserMPSC {
					producers = 2
				}
				per := p.userRecords / producers
				add(sc, Ringo, size, func() (Result, error) { return userRingo(sc, producers, size, p.userRing, per, 0) })
				add(sc, Chan, size, func() (Result, error) { return userChan(sc, producers, size, p.userRing, per, 0) })
			case UserRing:
				for _, impl := range []string{Ringo, Libbpf} {
					add(sc, impl, size, func() (Result, error) { return userRing(impl, size, p.userRing, uint64(p.userRecords), lib) })
				}
			}
		}
	}
	return jobs
}

// machine describes this machine.
func machine(quick bool) Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), Quick: quick, Time: time.Now().UTC().Format(time.RFC3339)}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}
