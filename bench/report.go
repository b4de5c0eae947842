package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// missing is what a table cell or ratio shows when there is no number.
const missing = "–"

// WriteOutputs creates dir if needed and writes the whole report into it:
// results.json (the indented JSON of rep), results.md (see WriteMarkdown)
// and one <scenario>.png per scenario (see WritePlots).
func WriteOutputs(dir string, rep Report) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("bench: create output directory: %w", err)
	}
	js, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("bench: write results.json: %w", err)
	}
	js = append(js, '\n')
	if err := os.WriteFile(filepath.Join(dir, "results.json"), js, 0o644); err != nil {
		return fmt.Errorf("bench: write results.json: %w", err)
	}
	var md bytes.Buffer
	if err := WriteMarkdown(&md, rep); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.md"), md.Bytes(), 0o644); err != nil {
		return fmt.Errorf("bench: write results.md: %w", err)
	}
	return WritePlots(dir, rep)
}

// WriteMarkdown writes rep as a markdown document: a line describing the
// machine, then one section per scenario present (in the order of the
// scenario constants, unknown scenarios last in name order). Each section
// holds a table with one row per implementation (ringo first) and one
// column per record size, and under it the ratio of ringo's records/s to
// every other implementation's, size by size. Cells without a result
// show "–". The output depends only on rep's content, not on its order,
// except that a later duplicate of the same scenario, implementation and
// size replaces an earlier one.
func WriteMarkdown(w io.Writer, rep Report) error {
	var b strings.Builder
	b.WriteString("# ringo benchmark results\n\n")
	b.WriteString(machineLine(rep.Machine))
	b.WriteString("\n")
	tabs := tabulate(rep.Results)
	if len(tabs) == 0 {
		b.WriteString("\nNo results.\n")
	}
	for _, t := range tabs {
		b.WriteString("\n")
		writeSection(&b, t)
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("bench: write markdown: %w", err)
	}
	return nil
}

// WritePlots writes one PNG per scenario present in rep into dir (which
// must exist), named <scenario>.png: records/s in millions against record
// size, one line per implementation.
func WritePlots(dir string, rep Report) error {
	for _, t := range tabulate(rep.Results) {
		name, err := plotName(t.scenario)
		if err != nil {
			return fmt.Errorf("bench: write plots: %w", err)
		}
		if err := plotScenario(filepath.Join(dir, name), t); err != nil {
			return fmt.Errorf("bench: write plots: %s: %w", t.scenario, err)
		}
	}
	return nil
}

// table is one scenario's results arranged as implementations × columns:
// record sizes, or for a paced scenario the producer's rates.
type table struct {
	scenario string
	impls    []string // ringo first, then constant order, then by name
	cols     []int    // ascending
	paced    bool     // cols are rates (records/s), not sizes
	cells    map[cellKey]Result
}

type cellKey struct {
	impl string
	col  int
}

func (t *table) cell(impl string, col int) (Result, bool) {
	r, ok := t.cells[cellKey{impl, col}]
	return r, ok
}

// column is where r goes in its table: its rate if paced, else its size.
func column(r Result) int {
	if r.Rate > 0 {
		return int(math.Round(r.Rate))
	}
	return r.RecordSize
}

// label is a column's heading.
func (t *table) label(col int) string {
	if t.paced {
		return formatRate(float64(col))
	}
	return fmt.Sprintf("%d B", col)
}

// tabulate groups results by scenario, ordered as the scenario constants
// with unknown names after them in name order.
func tabulate(results []Result) []*table {
	byScenario := map[string]*table{}
	for _, r := range results {
		t := byScenario[r.Scenario]
		if t == nil {
			t = &table{scenario: r.Scenario, cells: map[cellKey]Result{}}
			byScenario[r.Scenario] = t
		}
		if !slices.Contains(t.impls, r.Impl) {
			t.impls = append(t.impls, r.Impl)
		}
		if r.Rate > 0 {
			t.paced = true
		}
		col := column(r)
		if !slices.Contains(t.cols, col) {
			t.cols = append(t.cols, col)
		}
		t.cells[cellKey{r.Impl, col}] = r
	}
	tabs := make([]*table, 0, len(byScenario))
	for _, t := range byScenario {
		sortByKnownOrder(t.impls, implOrder())
		slices.Sort(t.cols)
		tabs = append(tabs, t)
	}
	slices.SortFunc(tabs, func(a, b *table) int {
		return compareKnown(a.scenario, b.scenario, scenarioOrder())
	})
	return tabs
}

func scenarioOrder() []string { return Scenarios() }

func implOrder() []string {
	return []string{Ringo, RingoBatch, Libbpf, CiliumRead, CiliumReadInto, DropinRead, DropinReadInto, CiliumPerf, Chan, FloorCall}
}

// sortByKnownOrder sorts names by their position in known, unknown names
// last in lexical order.
func sortByKnownOrder(names, known []string) {
	slices.SortFunc(names, func(a, b string) int { return compareKnown(a, b, known) })
}

func compareKnown(a, b string, known []string) int {
	ia, ib := slices.Index(known, a), slices.Index(known, b)
	if ia < 0 {
		ia = len(known)
	}
	if ib < 0 {
		ib = len(known)
	}
	if ia != ib {
		return ia - ib
	}
	return strings.Compare(a, b)
}

// isStreaming reports whether a scenario runs producer and consumer at
// once, so drops and wake-ups mean something.
func isStreaming(scenario string) bool {
	switch scenario {
	case Stream, StreamSampled, StreamPaced, PerfBuf:
		return true
	}
	return false
}

func machineLine(m Machine) string {
	run := "full run"
	if m.Quick {
		run = "quick run"
	}
	return fmt.Sprintf("Machine: kernel %s, CPU %s, %d CPUs, Go %s, libbpf %s, %s, %s.",
		orUnknown(m.Kernel), orUnknown(m.CPU), m.CPUs, orUnknown(m.GoVersion),
		orValue(m.Libbpf, "none"), run, orUnknown(m.Time))
}

func orUnknown(s string) string { return orValue(s, "unknown") }

func orValue(s, def string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return def
	}
	return s
}

func writeSection(b *strings.Builder, t *table) {
	fmt.Fprintf(b, "## %s\n\n", t.scenario)

	b.WriteString("| impl |")
	for _, c := range t.cols {
		fmt.Fprintf(b, " %s |", t.label(c))
	}
	b.WriteString("\n| --- |")
	for range t.cols {
		b.WriteString(" ---: |")
	}
	b.WriteString("\n")
	for _, impl := range t.impls {
		fmt.Fprintf(b, "| %s |", impl)
		for _, c := range t.cols {
			text := missing
			if r, ok := t.cell(impl, c); ok {
				text = formatCell(r)
			}
			fmt.Fprintf(b, " %s |", text)
		}
		b.WriteString("\n")
	}

	if ratios := ratioLines(t); len(ratios) > 0 {
		b.WriteString("\n")
		for _, l := range ratios {
			fmt.Fprintf(b, "- %s\n", l)
		}
	}
	if notes := noteLines(t); len(notes) > 0 {
		b.WriteString("\nNotes:\n\n")
		for _, l := range notes {
			fmt.Fprintf(b, "- %s\n", l)
		}
	}
}

// formatCell renders one result: records/s, plus ns and CPU ns per record
// for drain, CPU ns per record for a paced run, plus drops and wake-ups for
// the streaming scenarios.
func formatCell(r Result) string {
	parts := []string{formatRate(r.RecordsPerSec)}
	if r.Rate > 0 {
		parts = append(parts, formatNs(r.CPUNsPerRecord)+" cpu ns")
	}
	if r.Scenario == Drain {
		parts = append(parts,
			formatNs(r.NsPerRecord)+" ns",
			formatNs(r.CPUNsPerRecord)+" cpu ns")
	}
	if isStreaming(r.Scenario) {
		drops := "drops"
		if r.Drops == 1 {
			drops = "drop"
		}
		parts = append(parts, fmt.Sprintf("%d %s", r.Drops, drops))
		if r.WakeupsPer1000 >= 0 {
			parts = append(parts, formatSig(r.WakeupsPer1000)+" wake-ups/1000")
		}
	}
	return strings.Join(parts, " · ")
}

// formatRate renders records per second with a k, M or G prefix, e.g.
// "12.3 M/s".
func formatRate(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return missing
	}
	unit := ""
	for _, u := range []struct {
		scale float64
		name  string
	}{{1e9, "G"}, {1e6, "M"}, {1e3, "k"}} {
		if math.Abs(v) >= u.scale {
			v /= u.scale
			unit = u.name
			break
		}
	}
	return formatSig(v) + " " + unit + "/s"
}

// formatSig prints about three significant digits without an exponent.
func formatSig(v float64) string {
	a := math.Abs(v)
	switch {
	case a >= 100 || a == 0:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

// formatNs prints nanoseconds as whole numbers, with one decimal below 10.
func formatNs(v float64) string {
	if math.Abs(v) < 10 && v != 0 {
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}

// ratioLines gives, for ringo and ringo_batch, their records/s divided by
// every other implementation's at each column of the table (for a paced
// table, where every reader gets the producer's rate, their CPU ns per
// record instead: below 1 is less CPU); the drop-in's divided by the
// cilium/ebpf reader's it replaces; and in drain, where the targets are in
// CPU time, their CPU ns per record divided by libbpf's (below 1: less CPU
// than libbpf).
func ratioLines(t *table) []string {
	var lines []string
	line := func(name string, ratio func(a, o Result) float64, base, impl string) {
		vals := make([]string, len(t.cols))
		for i, c := range t.cols {
			vals[i] = missing
			a, okA := t.cell(base, c)
			o, okO := t.cell(impl, c)
			if okA && okO {
				if q := ratio(a, o); !math.IsNaN(q) && !math.IsInf(q, 0) && q > 0 {
					vals[i] = strconv.FormatFloat(q, 'f', 2, 64)
				}
			}
		}
		lines = append(lines, fmt.Sprintf("%s: %s", name, strings.Join(vals, ", ")))
	}
	rate := func(a, o Result) float64 { return a.RecordsPerSec / o.RecordsPerSec }
	cpu := func(a, o Result) float64 { return a.CPUNsPerRecord / o.CPUNsPerRecord }
	by, what := rate, ""
	if t.paced {
		by, what = cpu, " cpu ns"
	}
	for _, base := range []string{Ringo, RingoBatch} {
		if !slices.Contains(t.impls, base) {
			continue
		}
		for _, impl := range t.impls {
			if impl != Ringo && impl != RingoBatch && impl != FloorCall {
				line(fmt.Sprintf("%s%s ÷ %s%s", base, what, impl, what), by, base, impl)
			}
		}
	}
	// The drop-in against the cilium/ebpf reader it replaces.
	for _, p := range [][2]string{{DropinRead, CiliumRead}, {DropinReadInto, CiliumReadInto}} {
		if slices.Contains(t.impls, p[0]) && slices.Contains(t.impls, p[1]) {
			line(fmt.Sprintf("%s%s ÷ %s%s", p[0], what, p[1], what), by, p[0], p[1])
		}
	}
	if t.scenario == Drain {
		// Each against libbpf; Consume against its floor (floor.go),
		// and the floor against libbpf.
		for _, p := range [][2]string{{Ringo, Libbpf}, {RingoBatch, Libbpf}, {Ringo, FloorCall}, {FloorCall, Libbpf}} {
			if slices.Contains(t.impls, p[0]) && slices.Contains(t.impls, p[1]) {
				line(fmt.Sprintf("%s cpu ns ÷ %s cpu ns", p[0], p[1]), cpu, p[0], p[1])
			}
		}
	}
	return lines
}

// noteLines lists the results' notes, one line per implementation and
// note with the columns it applies to.
func noteLines(t *table) []string {
	var lines []string
	for _, impl := range t.impls {
		var notes []string
		cols := map[string][]string{}
		for _, c := range t.cols {
			r, ok := t.cell(impl, c)
			note := strings.Join(strings.Fields(r.Note), " ")
			if !ok || note == "" {
				continue
			}
			if _, seen := cols[note]; !seen {
				notes = append(notes, note)
			}
			cols[note] = append(cols[note], t.label(c))
		}
		for _, n := range notes {
			lines = append(lines, fmt.Sprintf("%s (%s): %s", impl, strings.Join(cols[n], ", "), n))
		}
	}
	return lines
}

// plotScenario draws one scenario's records/s against record size into a
// PNG at path (a paced scenario's CPU µs per record against the producer's
// rate). Columns sit at evenly spaced categorical positions (the suite's
// sizes and rates grow geometrically), labelled with their values.
func plotScenario(path string, t *table) error {
	p := plot.New()
	p.Title.Text = t.scenario + ": records/s by record size"
	p.X.Label.Text = "record size (bytes)"
	p.Y.Label.Text = "records/s (millions)"
	if t.paced {
		p.Title.Text = t.scenario + ": consumer CPU per record by producer rate"
		p.X.Label.Text = "records/s the producer writes"
		p.Y.Label.Text = "CPU µs per record"
	}
	// Top right: records/s usually fall as records grow, so the corner
	// above the largest size is the emptiest.
	p.Legend.Top = true
	p.Add(plotter.NewGrid())

	ticks := make(plot.ConstantTicks, len(t.cols))
	for i, c := range t.cols {
		label := strconv.Itoa(c)
		if t.paced {
			label = formatRate(float64(c))
		}
		ticks[i] = plot.Tick{Value: float64(i), Label: label}
	}
	p.X.Tick.Marker = ticks

	maxY, minY := 0.0, math.Inf(1)
	for n, impl := range t.impls {
		segs := segments(t, impl)
		for i, seg := range segs {
			for _, pt := range seg {
				maxY = math.Max(maxY, pt.Y)
				if pt.Y > 0 {
					minY = math.Min(minY, pt.Y)
				}
			}
			line, points, err := plotter.NewLinePoints(seg)
			if err != nil {
				return fmt.Errorf("%s: %w", impl, err)
			}
			line.Color = plotutil.Color(n)
			line.Width = vg.Points(1.5)
			points.Color = plotutil.Color(n)
			points.Shape = plotutil.Shape(n)
			points.Radius = vg.Points(3)
			p.Add(line, points)
			if i == 0 {
				p.Legend.Add(impl, line, points)
			}
		}
	}

	p.X.Min, p.X.Max = -0.5, float64(len(t.cols))-0.5
	p.Y.Min = 0
	if maxY <= 0 {
		maxY = 1
	}
	// Head room for the legend.
	p.Y.Max = maxY * 1.25
	if t.paced {
		// CPU per record spans decades from the slowest rate to the
		// fastest.
		p.Y.Scale, p.Y.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: -1}
		p.Y.Min, p.Y.Max = minY/2, maxY*4
	}

	return p.Save(6*vg.Inch, 4*vg.Inch, path)
}

// segments splits one implementation's points into runs of consecutive
// columns, so a missing one breaks the line instead of being bridged.
// Results with a value that cannot be drawn count as missing.
func segments(t *table, impl string) []plotter.XYs {
	var segs []plotter.XYs
	var cur plotter.XYs
	for i, c := range t.cols {
		r, ok := t.cell(impl, c)
		y := r.RecordsPerSec / 1e6
		if t.paced {
			y = r.CPUNsPerRecord / 1e3
		}
		if !ok || math.IsNaN(y) || math.IsInf(y, 0) {
			if len(cur) > 0 {
				segs = append(segs, cur)
				cur = nil
			}
			continue
		}
		cur = append(cur, plotter.XY{X: float64(i), Y: y})
	}
	if len(cur) > 0 {
		segs = append(segs, cur)
	}
	return segs
}

// plotName gives the file name of a scenario's plot, refusing names that
// would land outside the output directory.
func plotName(scenario string) (string, error) {
	if scenario == "" || scenario == "." || scenario == ".." ||
		strings.ContainsAny(scenario, `/\`) || strings.ContainsRune(scenario, 0) {
		return "", fmt.Errorf("scenario name %q is not a plain file name", scenario)
	}
	return scenario + ".png", nil
}
