package main

import (
	"flag"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/ringo-bpf/ringo/bench"
)

var benchCmd = &command{
	name:    "bench",
	args:    "[--quick] [--json] [--out DIR] [--sizes 16,64,256,1024] [--scenarios drain,stream,...]",
	summary: "benchmark ringo against libbpf, cilium/ebpf, the perf buffer and Go channels",
	help: `Every implementation reads records of the same BPF producer (run with
BPF_PROG_TEST_RUN, looping with bpf_loop) and checksums them; a run that read
wrong records fails. Scenarios: drain (a pre-filled kernel ring consumed to
empty), stream and stream_sampled (producer and consumer on two CPUs, with
adaptive or sampled wake-ups), stream_paced (the producer paced to 1 k, 10 k,
100 k and 1 M records/s, 64-byte records: the consumer's CPU per record),
perfbuf (perf buffer against ring buffer), user_spsc and user_mpsc (in-process
ring against a Go channel), user_paced (user_spsc paced as stream_paced),
user_ring (user space to a BPF program). The libbpf baseline is a C driver built with
gcc against libbpf-dev (apt-get install gcc libbpf-dev); without them it is
left out, and bench says so and exits 1.

--quick takes under 2 minutes on 2 cores, the full run under 15. Progress goes
to stderr; --json prints {"machine": {...}, "results": [...]} on stdout;
--out DIR writes results.json, results.md and a PNG plot per scenario.
Needs root (BPF) and bpffs at /sys/fs/bpf.`,
	define: func(fs *flag.FlagSet) func(*env, []string) error {
		quick := fs.Bool("quick", false, "the short run (under 2 minutes)")
		out := fs.String("out", "", "write results.json, results.md and plots into DIR")
		sizes := fs.String("sizes", "", "record sizes, comma-separated (default 16,64,256,1024)")
		scenarios := fs.String("scenarios", "", "scenarios to run, comma-separated (default all)")
		asJSON := jsonFlag(fs)
		return func(e *env, args []string) error {
			if len(args) != 0 {
				return usagef("bench takes no arguments, got %q", args[0])
			}
			cfg := bench.Config{Quick: *quick, Progress: e.stderr}
			if *sizes != "" {
				for _, s := range strings.Split(*sizes, ",") {
					n, err := strconv.Atoi(strings.TrimSpace(s))
					if err != nil {
						return usagef("--sizes: %q is not a number", s)
					}
					cfg.Sizes = append(cfg.Sizes, n)
				}
			}
			if *scenarios != "" {
				for _, s := range strings.Split(*scenarios, ",") {
					s = strings.TrimSpace(s)
					if !slices.Contains(bench.Scenarios(), s) {
						return usagef("--scenarios: no scenario %q (%s)", s, strings.Join(bench.Scenarios(), ", "))
					}
					cfg.Scenarios = append(cfg.Scenarios, s)
				}
			}
			rep, runErr := bench.Run(cfg)
			if *out != "" {
				if err := bench.WriteOutputs(*out, rep); err != nil {
					return err
				}
				fmt.Fprintf(e.stderr, "wrote %s/results.json, results.md and plots\n", *out)
			}
			if *asJSON {
				if err := writeJSON(e.stdout, rep); err != nil {
					return err
				}
			} else if err := bench.WriteMarkdown(e.stdout, rep); err != nil {
				return err
			}
			return runErr
		}
	},
}
