package ringo

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The chaos test: producer processes write sequence-numbered records into a
// shared ring while a controller kills (SIGKILL) and restarts random
// producers and the consumer process. At the end, every record a producer
// committed was delivered, intact, in per-producer order within each
// consumer's life; the only duplicates are records a killed consumer had
// been handed but not yet released; the abandon and drop counters agree
// with what the producers saw.

const chaosEnd = 0xffff_ffff // producer id of the record that ends the run

// chaosLog is where a producer process records, after each step, how many
// records it committed and how many reservations the full ring refused:
// two u64 per producer id at offset 16*id, written with pwrite.
func chaosLog(dir string) string { return filepath.Join(dir, "progress") }

// runChaosProducer is a producer process: "dir|name|id".
func runChaosProducer(spec string) error {
	f := strings.Split(spec, "|")
	id, _ := strconv.Atoi(f[2])
	r, err := Open(f[1], WithDir(f[0]))
	if err != nil {
		return err
	}
	log, err := os.OpenFile(chaosLog(f[0]), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(uint64(id), 7))
	var committed, dropped uint64
	var entry [16]byte
	for seq := uint32(0); ; {
		size := 8 + rng.IntN(300)
		res, err := r.Reserve(size)
		if errors.Is(err, ErrFull) {
			dropped++
			binary.LittleEndian.PutUint64(entry[8:], dropped)
			log.WriteAt(entry[8:], int64(16*id+8))
			time.Sleep(50 * time.Microsecond)
			continue
		}
		if err != nil {
			return err
		}
		b := res.Bytes()
		binary.LittleEndian.PutUint32(b, uint32(id))
		binary.LittleEndian.PutUint32(b[4:], seq)
		for i := 8; i < size; i++ {
			b[i] = byte(id*7 + int(seq) + i)
		}
		if rng.IntN(8) == 0 {
			// Hold the reservation a moment: a kill may land here.
			time.Sleep(time.Duration(rng.IntN(300)) * time.Microsecond)
		}
		if err := r.Commit(res, 0); err != nil {
			return err
		}
		seq++
		committed++
		binary.LittleEndian.PutUint64(entry[:], committed)
		log.WriteAt(entry[:8], int64(16*id))
	}
}

// runChaosConsumer is the consumer process: "dir|name". It writes "id seq"
// for each record to stdout, unbuffered, and exits at the end record.
func runChaosConsumer(spec string) error {
	f := strings.Split(spec, "|")
	r, err := Open(f[1], WithDir(f[0]))
	if err != nil {
		return err
	}
	var rd *Reader
	for {
		// The killed consumer's claim may look alive for a moment
		// (a zombie not yet reaped counts as dead, but the parent
		// may be slow): retry.
		if rd, err = NewReader(r); err == nil {
			break
		}
		time.Sleep(time.Millisecond)
	}
	for rec, err := range rd.Records(context.Background()) {
		if err != nil {
			return err
		}
		id := binary.LittleEndian.Uint32(rec.Data)
		seq := binary.LittleEndian.Uint32(rec.Data[4:])
		if id == chaosEnd {
			return nil
		}
		for i := 8; i < len(rec.Data); i++ {
			if rec.Data[i] != byte(int(id)*7+int(seq)+i) {
				return fmt.Errorf("record %d of producer %d corrupt at byte %d", seq, id, i)
			}
		}
		if _, err := fmt.Fprintf(os.Stdout, "%d %d\n", id, seq); err != nil {
			return err
		}
	}
	return nil
}

type chaosDelivery struct{ life, id, seq int }

func TestChaosKillProducersAndConsumer(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	r, err := Create("chaos", 1<<16, WithDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	var mu sync.Mutex
	var delivered []chaosDelivery
	// Children still running when the test ends (it failed) are killed.
	var children []*exec.Cmd
	t.Cleanup(func() {
		for _, c := range children {
			if c.ProcessState == nil && c.Process != nil {
				c.Process.Kill()
				c.Wait()
			}
		}
	})
	start := func(env string) *exec.Cmd {
		cmd := exec.Command(exe)
		cmd.Env = append(os.Environ(), env)
		cmd.Stderr = os.Stderr
		children = append(children, cmd)
		return cmd
	}
	life := 0
	// A consumer's stdout is read to its end before its process is
	// waited for: Wait closes the pipe, and lines still in it would be
	// records the consumer was handed (and may have freed) that the test
	// never saw.
	type chaosConsumer struct {
		cmd  *exec.Cmd
		read chan struct{} // closed once its stdout is read to EOF
	}
	startConsumer := func() chaosConsumer {
		cmd := start("RINGO_TEST_CHAOS_CONSUMER=" + dir + "|chaos")
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		life++
		l := life
		read := make(chan struct{})
		go func() {
			defer close(read)
			s := bufio.NewScanner(out)
			for s.Scan() {
				var id, seq int
				fmt.Sscan(s.Text(), &id, &seq)
				mu.Lock()
				delivered = append(delivered, chaosDelivery{l, id, seq})
				mu.Unlock()
			}
			io.Copy(io.Discard, out)
		}()
		return chaosConsumer{cmd, read}
	}
	nextID := 0
	startProducer := func() *exec.Cmd {
		cmd := start(fmt.Sprintf("RINGO_TEST_CHAOS_PRODUCER=%s|chaos|%d", dir, nextID))
		nextID++
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}

	// RINGO_CHAOS_SEED replays a run's kill schedule (the timing still
	// differs); RINGO_CHAOS_RUN makes a run longer, for soaks.
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("RINGO_CHAOS_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d (RINGO_CHAOS_SEED)", seed)
	rng := rand.New(rand.NewPCG(seed, 2))
	run := 3 * time.Second
	if testing.Short() {
		run = time.Second
	}
	if s := os.Getenv("RINGO_CHAOS_RUN"); s != "" {
		if run, err = time.ParseDuration(s); err != nil {
			t.Fatalf("RINGO_CHAOS_RUN: %v", err)
		}
	}
	// A child that exits on its own rather than by the kill has failed
	// (its error is on stderr): a producer whose commit was refused, say,
	// because its record was taken for a dead process's.
	killed := func(what string, cmd *exec.Cmd, err error) {
		t.Helper()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("%s exited by itself before it was killed: %v (its error is above)", what, err)
		}
	}
	consumer := startConsumer()
	producers := []*exec.Cmd{startProducer(), startProducer(), startProducer()}
	kills, consumerKills := 0, 0
	for deadline := time.Now().Add(run); time.Now().Before(deadline); {
		time.Sleep(time.Duration(20+rng.IntN(60)) * time.Millisecond)
		if rng.IntN(4) == 0 {
			consumer.cmd.Process.Kill()
			<-consumer.read
			killed("consumer", consumer.cmd, consumer.cmd.Wait())
			consumerKills++
			consumer = startConsumer()
			continue
		}
		i := rng.IntN(len(producers))
		producers[i].Process.Kill()
		killed("producer", producers[i], producers[i].Wait())
		kills++
		producers[i] = startProducer()
	}
	for _, p := range producers {
		p.Process.Kill()
		killed("producer", p, p.Wait())
		kills++
	}
	end := make([]byte, 8)
	binary.LittleEndian.PutUint32(end, chaosEnd)
	endCtx, cancelEnd := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancelEnd()
	if err := r.OutputWait(endCtx, end, 0); err != nil {
		t.Fatalf("the end record: %v (positions %+v)", err, r.Positions())
	}
	done := make(chan error, 1)
	go func() { <-consumer.read; done <- consumer.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("consumer: %v", err)
		}
	case <-time.After(30 * time.Second):
		consumer.cmd.Process.Kill()
		t.Fatalf("consumer did not reach the end record (positions %+v)", r.Positions())
	}

	// What the producers say they did.
	log, _ := os.ReadFile(chaosLog(dir))
	log = append(log, make([]byte, 16*nextID)...) // entries never written read as 0
	committed := make([]uint64, nextID)
	var droppedSeen uint64
	for id := 0; id < nextID; id++ {
		committed[id] = binary.LittleEndian.Uint64(log[16*id:])
		droppedSeen += binary.LittleEndian.Uint64(log[16*id+8:])
	}

	// Check the deliveries.
	type key struct{ id, seq int }
	firstLife := map[key]int{}
	last := map[[2]int]int{} // (life, id) -> last seq
	dups := 0
	for _, d := range delivered {
		k := key{d.id, d.seq}
		if l, ok := firstLife[k]; ok {
			if l == d.life {
				t.Fatalf("producer %d record %d delivered twice to consumer life %d", d.id, d.seq, d.life)
			}
			dups++
		} else {
			firstLife[k] = d.life
		}
		lk := [2]int{d.life, d.id}
		if prev, ok := last[lk]; ok && d.seq != prev+1 {
			t.Fatalf("consumer life %d: producer %d record %d after %d", d.life, d.id, d.seq, prev)
		}
		last[lk] = d.seq
	}
	total := 0
	for id := 0; id < nextID; id++ {
		n := 0
		for firstLife[key{id, n}] != 0 {
			n++
		}
		for seq := range firstLife {
			if seq.id == id && seq.seq >= n {
				t.Fatalf("producer %d: record %d delivered but record %d lost", id, seq.seq, n)
			}
		}
		// A producer killed between its commit and its log write has one
		// record more than it logged.
		if uint64(n) < committed[id] || uint64(n) > committed[id]+1 {
			t.Fatalf("producer %d committed %d records (logged), %d delivered", id, committed[id], n)
		}
		total += n
	}
	if r.abandoned() > uint64(kills) {
		t.Fatalf("%d records abandoned by %d killed producers", r.abandoned(), kills)
	}
	if d := r.dropped(); d < droppedSeen || d > droppedSeen+uint64(kills) {
		t.Fatalf("ring counted %d drops, producers logged %d (and %d kills)", d, droppedSeen, kills)
	}
	t.Logf("%d producers (%d killed), consumer killed %d times: %d records delivered, %d delivered again after a consumer kill, %d abandoned, %d refused while full",
		nextID, kills, consumerKills, total, dups, r.abandoned(), r.dropped())
}
