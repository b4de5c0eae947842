package bench

import (
	"encoding/json"
	"image/png"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func testMachine() Machine {
	return Machine{
		Kernel:    "6.8.0-test",
		CPU:       "Test CPU @ 3.00GHz",
		CPUs:      8,
		GoVersion: "go1.26.0",
		Libbpf:    "1.4.0",
		Quick:     true,
		Time:      "2025-01-02T03:04:05Z",
	}
}

// smallReport is deliberately out of order, and libbpf has no drain
// result at 64 bytes.
func smallReport() Report {
	return Report{
		Machine: testMachine(),
		Results: []Result{
			{Scenario: UserSPSC, Impl: Chan, RecordSize: 16, RecordsPerSec: 950e3, WakeupsPer1000: -1},
			{Scenario: Stream, Impl: Libbpf, RecordSize: 64, RecordsPerSec: 5e6, Drops: 3, WakeupsPer1000: -1},
			{Scenario: Stream, Impl: Ringo, RecordSize: 64, RecordsPerSec: 5.5e6, WakeupsPer1000: 1.25, Note: "adaptive wake-ups"},
			{Scenario: Drain, Impl: Libbpf, RecordSize: 16, RecordsPerSec: 11e6, NsPerRecord: 90.9, CPUNsPerRecord: 90, WakeupsPer1000: -1},
			{Scenario: Drain, Impl: Ringo, RecordSize: 64, RecordsPerSec: 10e6, NsPerRecord: 100, CPUNsPerRecord: 99.6, WakeupsPer1000: -1},
			{Scenario: Drain, Impl: Ringo, RecordSize: 16, RecordsPerSec: 12.3e6, NsPerRecord: 81.3, CPUNsPerRecord: 80.4, WakeupsPer1000: -1},
		},
	}
}

const smallMarkdown = `# ringo benchmark results

Machine: kernel 6.8.0-test, CPU Test CPU @ 3.00GHz, 8 CPUs, Go go1.26.0, libbpf 1.4.0, quick run, 2025-01-02T03:04:05Z.

## drain

| impl | 16 B | 64 B |
| --- | ---: | ---: |
| ringo | 12.3 M/s · 81 ns · 80 cpu ns | 10.0 M/s · 100 ns · 100 cpu ns |
| libbpf | 11.0 M/s · 91 ns · 90 cpu ns | – |

- ringo ÷ libbpf: 1.12, –
- ringo cpu ns ÷ libbpf cpu ns: 0.89, –

## stream

| impl | 64 B |
| --- | ---: |
| ringo | 5.50 M/s · 0 drops · 1.25 wake-ups/1000 |
| libbpf | 5.00 M/s · 3 drops |

- ringo ÷ libbpf: 1.10

Notes:

- ringo (64 B): adaptive wake-ups

## user_spsc

| impl | 16 B |
| --- | ---: |
| chan | 950 k/s |
`

func TestWriteMarkdownSmall(t *testing.T) {
	var b strings.Builder
	if err := WriteMarkdown(&b, smallReport()); err != nil {
		t.Fatal(err)
	}
	if got := b.String(); got != smallMarkdown {
		t.Errorf("markdown mismatch\n--- got ---\n%s\n--- want ---\n%s", got, smallMarkdown)
	}
}

func TestWriteMarkdownNoTrailingWhitespace(t *testing.T) {
	var b strings.Builder
	if err := WriteMarkdown(&b, bigReport()); err != nil {
		t.Fatal(err)
	}
	for i, l := range strings.Split(b.String(), "\n") {
		if strings.TrimRight(l, " \t") != l {
			t.Errorf("line %d has trailing whitespace: %q", i+1, l)
		}
	}
}

func TestWriteMarkdownDeterministic(t *testing.T) {
	rep := bigReport()
	var a, b strings.Builder
	if err := WriteMarkdown(&a, rep); err != nil {
		t.Fatal(err)
	}
	// Reverse the results: the document must not change.
	rev := rep
	rev.Results = make([]Result, len(rep.Results))
	for i, r := range rep.Results {
		rev.Results[len(rep.Results)-1-i] = r
	}
	if err := WriteMarkdown(&b, rev); err != nil {
		t.Fatal(err)
	}
	if a.String() != b.String() {
		t.Errorf("output depends on result order\n--- forward ---\n%s\n--- reversed ---\n%s", a.String(), b.String())
	}
}

func TestWriteMarkdownEmpty(t *testing.T) {
	var b strings.Builder
	if err := WriteMarkdown(&b, Report{}); err != nil {
		t.Fatal(err)
	}
	want := "# ringo benchmark results\n\n" +
		"Machine: kernel unknown, CPU unknown, 0 CPUs, Go unknown, libbpf none, full run, unknown.\n\n" +
		"No results.\n"
	if b.String() != want {
		t.Errorf("got %q, want %q", b.String(), want)
	}
}

func TestFormatRate(t *testing.T) {
	for _, c := range []struct {
		v    float64
		want string
	}{
		{0, "0 /s"},
		{5, "5.00 /s"},
		{950, "950 /s"},
		{1500, "1.50 k/s"},
		{12.34e6, "12.3 M/s"},
		{123.4e6, "123 M/s"},
		{2.5e9, "2.50 G/s"},
	} {
		if got := formatRate(c.v); got != c.want {
			t.Errorf("formatRate(%v) = %q, want %q", c.v, got, c.want)
		}
	}
}

// bigReport covers several scenarios, implementations and sizes, a
// missing cell (libbpf drain at 1024 bytes) and a scenario with a single
// implementation (user_ring).
func bigReport() Report {
	var rs []Result
	sizes := []int{16, 64, 256, 1024}
	add := func(scenario, impl string, base float64) {
		for i, s := range sizes {
			if scenario == Drain && impl == Libbpf && s == 1024 {
				continue
			}
			rps := base / float64(i+1)
			rs = append(rs, Result{
				Scenario:        scenario,
				Impl:            impl,
				RecordSize:      s,
				Records:         1 << 20,
				RecordsPerSec:   rps,
				NsPerRecord:     1e9 / rps,
				CPUNsPerRecord:  0.9e9 / rps,
				AllocsPerRecord: 0,
				Drops:           uint64(i),
				WakeupsPer1000:  float64(i) - 1,
			})
		}
	}
	add(Drain, Ringo, 40e6)
	add(Drain, Libbpf, 35e6)
	add(Drain, CiliumRead, 8e6)
	add(Drain, CiliumReadInto, 20e6)
	add(Stream, Ringo, 20e6)
	add(Stream, Libbpf, 19e6)
	add(PerfBuf, CiliumPerf, 4e6)
	add(PerfBuf, Ringo, 18e6)
	add(UserSPSC, Chan, 9e6)
	add(UserSPSC, Ringo, 60e6)
	add(UserRing, Ringo, 30e6)
	return Report{Machine: testMachine(), Results: rs}
}

func TestWriteOutputs(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out", "nested")
	rep := bigReport()
	if err := WriteOutputs(dir, rep); err != nil {
		t.Fatal(err)
	}

	js, err := os.ReadFile(filepath.Join(dir, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatalf("results.json: %v", err)
	}
	if !reflect.DeepEqual(back, rep) {
		t.Errorf("results.json does not decode back to the report:\n got %+v\nwant %+v", back, rep)
	}

	md, err := os.ReadFile(filepath.Join(dir, "results.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"## drain\n",
		"| impl | 16 B | 64 B | 256 B | 1024 B |\n",
		"| libbpf | 35.0 M/s · 29 ns · 26 cpu ns | 17.5 M/s · 57 ns · 51 cpu ns | 11.7 M/s · 86 ns · 77 cpu ns | – |\n",
		"- ringo ÷ libbpf: 1.14, 1.14, 1.14, –\n",
		"- ringo ÷ cilium_read: 5.00, 5.00, 5.00, 5.00\n",
		"| ringo | 20.0 M/s · 0 drops | 10.0 M/s · 1 drop · 0 wake-ups/1000 |",
		"## user_ring\n",
	} {
		if !strings.Contains(string(md), want) {
			t.Errorf("results.md lacks %q\n%s", want, md)
		}
	}
	// Scenario order follows the constants.
	order := []string{"## drain", "## stream\n", "## perfbuf", "## user_spsc", "## user_ring"}
	last := -1
	for _, h := range order {
		i := strings.Index(string(md), h)
		if i <= last {
			t.Errorf("section %q out of order", h)
		}
		last = i
	}

	for _, s := range []string{Drain, Stream, PerfBuf, UserSPSC, UserRing} {
		checkPNG(t, filepath.Join(dir, s+".png"))
	}
	for _, s := range []string{StreamSampled, UserMPSC} {
		if _, err := os.Stat(filepath.Join(dir, s+".png")); !os.IsNotExist(err) {
			t.Errorf("%s.png: want no plot for an absent scenario, got err %v", s, err)
		}
	}
}

func TestWritePlotsSingleImplSingleSize(t *testing.T) {
	dir := t.TempDir()
	rep := Report{Results: []Result{
		{Scenario: UserMPSC, Impl: Ringo, RecordSize: 64, RecordsPerSec: 7e6},
		{Scenario: UserRing, Impl: Ringo, RecordSize: 64, RecordsPerSec: 0},
	}}
	if err := WritePlots(dir, rep); err != nil {
		t.Fatal(err)
	}
	checkPNG(t, filepath.Join(dir, UserMPSC+".png"))
	checkPNG(t, filepath.Join(dir, UserRing+".png"))
}

func TestWritePlotsBadScenario(t *testing.T) {
	dir := t.TempDir()
	rep := Report{Results: []Result{{Scenario: "../escape", Impl: Ringo, RecordSize: 16, RecordsPerSec: 1}}}
	err := WritePlots(dir, rep)
	if err == nil || !strings.HasPrefix(err.Error(), "bench: write plots: ") {
		t.Fatalf("got %v, want a bench: write plots: error", err)
	}
}

func checkPNG(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if b := img.Bounds(); b.Dx() < 300 || b.Dy() < 200 {
		t.Errorf("%s: image is only %dx%d", path, b.Dx(), b.Dy())
	}
}

// TestWritePaced: a paced scenario's columns are the producer's rates and
// its ratios compare CPU per record (every reader gets the same records/s);
// its plot draws CPU per record on a log scale.
func TestWritePaced(t *testing.T) {
	rep := Report{Machine: testMachine()}
	for _, rate := range []float64{1e3, 1e5} {
		rep.Results = append(rep.Results,
			Result{Scenario: StreamPaced, Impl: Libbpf, RecordSize: 64, Rate: rate, RecordsPerSec: rate, CPUNsPerRecord: 20e6 / rate * 10, WakeupsPer1000: 990},
			Result{Scenario: StreamPaced, Impl: Ringo, RecordSize: 64, Rate: rate, RecordsPerSec: rate, CPUNsPerRecord: 20e6 / rate * 8, WakeupsPer1000: 990})
	}
	var b strings.Builder
	if err := WriteMarkdown(&b, rep); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"## stream_paced\n",
		"| impl | 1.00 k/s | 100 k/s |\n",
		"| ringo | 1.00 k/s · 160000 cpu ns · 0 drops · 990 wake-ups/1000 | 100 k/s · 1600 cpu ns · 0 drops · 990 wake-ups/1000 |\n",
		"- ringo cpu ns ÷ libbpf cpu ns: 0.80, 0.80\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("markdown lacks %q\n%s", want, b.String())
		}
	}
	dir := t.TempDir()
	if err := WritePlots(dir, rep); err != nil {
		t.Fatal(err)
	}
	checkPNG(t, filepath.Join(dir, StreamPaced+".png"))
}

// TestWriteFloor: the drain's floor is compared by CPU per record, with
// Consume and with libbpf, and never as an implementation to beat.
func TestWriteFloor(t *testing.T) {
	rep := Report{Machine: testMachine()}
	for impl, cpu := range map[string]float64{Ringo: 6, RingoBatch: 3, Libbpf: 4, FloorCall: 5} {
		rep.Results = append(rep.Results, Result{Scenario: Drain, Impl: impl, RecordSize: 16, RecordsPerSec: 1e9 / cpu, CPUNsPerRecord: cpu, NsPerRecord: cpu})
	}
	var b strings.Builder
	if err := WriteMarkdown(&b, rep); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	for _, want := range []string{
		"- ringo cpu ns ÷ libbpf cpu ns: 1.50\n",
		"- ringo cpu ns ÷ floor_call cpu ns: 1.20\n",
		"- floor_call cpu ns ÷ libbpf cpu ns: 1.25\n",
		"| floor_call | 200 M/s · 5.0 ns · 5.0 cpu ns |\n",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q\n%s", want, md)
		}
	}
	if strings.Contains(md, "ringo ÷ floor") {
		t.Errorf("a floor compared as an implementation:\n%s", md)
	}
}
