package bench

import (
	"bufio"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
)

// The libbpf baseline is a small C program (baseline/libbpf/driver.c)
// built with gcc against the system's libbpf, run as a child process over
// the benchmark's maps, which it opens through pins.

//go:embed baseline/libbpf/driver.c
var driverSource []byte

// driver is the built libbpf baseline.
type driver struct {
	path    string
	pinDir  string
	version string
}

// buildDriver compiles the driver into dir. The error says what to
// install when gcc or libbpf-dev is missing.
func buildDriver(dir, pinDir string) (*driver, error) {
	src := filepath.Join(dir, "driver.c")
	if err := os.WriteFile(src, driverSource, 0o644); err != nil {
		return nil, err
	}
	bin := filepath.Join(dir, "ringo-libbpf-bench")
	out, err := exec.Command("gcc", "-O2", "-o", bin, src, "-lbpf").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("bench: build the libbpf baseline (needs gcc and libbpf-dev: apt-get install gcc libbpf-dev): %v\n%s", err, out)
	}
	return &driver{path: bin, pinDir: pinDir}, nil
}

// driverOut is the JSON line the driver prints.
type driverOut struct {
	Records uint64 `json:"records"`
	Bytes   uint64 `json:"bytes"`
	Csum    uint64 `json:"csum"`
	Bad     uint64 `json:"bad"`
	Full    uint64 `json:"full"`
	WallNs  uint64 `json:"wall_ns"`
	CPUNs   uint64 `json:"cpu_ns"`
	Polls   uint64 `json:"polls"`
	Libbpf  string `json:"libbpf"`
	Error   string `json:"error"`
}

func (o driverOut) result(r *Result) {
	sp := span{wallNs: time.Duration(o.WallNs), cpuNs: time.Duration(o.CPUNs)}
	sp.result(r, o.Records)
}

func (o driverOut) check(records, csum uint64) error {
	s := sink{records: o.Records, csum: o.Csum, bad: o.Bad}
	if err := s.check(records, csum); err != nil {
		return fmt.Errorf("bench: libbpf: %w", err)
	}
	return nil
}

// pin pins m for the driver and returns the path and a cleanup.
func (d *driver) pin(m *ebpf.Map, name string) (string, func(), error) {
	path := filepath.Join(d.pinDir, fmt.Sprintf("ringo_bench_%d_%s", os.Getpid(), name))
	os.Remove(path)
	if err := m.Pin(path); err != nil {
		return "", nil, fmt.Errorf("bench: pin %s for the libbpf baseline (is bpffs mounted at %s?): %w", name, d.pinDir, err)
	}
	return path, func() { m.Unpin() }, nil
}

// run starts the driver with args, waits for its "ready", calls started
// (if any) after sending "go", and returns its JSON result.
func (d *driver) run(started func(), args ...string) (driverOut, error) {
	var out driverOut
	cmd := exec.Command(d.path, args...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return out, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return out, err
	}
	if err := cmd.Start(); err != nil {
		return out, fmt.Errorf("bench: start the libbpf baseline: %w", err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	br := bufio.NewReader(stdout)
	line, err := br.ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		json.Unmarshal([]byte(line), &out)
		return out, fmt.Errorf("bench: the libbpf baseline did not start: %q %v %s", line, err, out.Error)
	}
	if _, err := io.WriteString(stdin, "go\n"); err != nil {
		return out, err
	}
	if started != nil {
		started()
	}
	line, err = br.ReadString('\n')
	if err != nil && line == "" {
		return out, fmt.Errorf("bench: the libbpf baseline printed no result: %w", err)
	}
	if err := json.Unmarshal([]byte(line), &out); err != nil {
		return out, fmt.Errorf("bench: the libbpf baseline printed %q: %w", line, err)
	}
	if out.Error != "" {
		return out, fmt.Errorf("bench: libbpf baseline: %s", out.Error)
	}
	if d.version == "" {
		d.version = out.Libbpf
	}
	return out, nil
}

// consume runs the driver's ring_buffer consumer over the kernel's ring:
// ring_buffer__consume until records have arrived, or with poll,
// ring_buffer__poll until the end record. started runs once it consumes.
func (d *driver) consume(k *kernel, records uint64, poll bool, started func()) (driverOut, error) {
	if d == nil {
		return driverOut{}, errNoDriver
	}
	path, unpin, err := d.pin(k.objs.Rb, "rb")
	if err != nil {
		return driverOut{}, err
	}
	defer unpin()
	args := []string{"consume", "--map", path, "--records", strconv.FormatUint(records, 10), "--cpu", strconv.Itoa(consumerCPU)}
	if poll {
		args = append(args, "--poll")
	}
	return d.run(started, args...)
}

// produce runs the driver's user_ring_buffer producer into the kernel's
// user ring: records of size bytes. started runs once it produces.
func (d *driver) produce(k *kernel, records uint64, size int, started func()) (driverOut, error) {
	if d == nil {
		return driverOut{}, errNoDriver
	}
	path, unpin, err := d.pin(k.objs.Urb, "urb")
	if err != nil {
		return driverOut{}, err
	}
	defer unpin()
	return d.run(started, "produce", "--map", path, "--records", strconv.FormatUint(records, 10),
		"--size", strconv.Itoa(size), "--cpu", strconv.Itoa(producerCPU))
}

var errNoDriver = errors.New("bench: the libbpf baseline is not built")
