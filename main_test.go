// TestMain, and the child processes the cross-process tests start: the test
// binary runs as one when an environment variable says so.

package ringo

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary act as a producer process for the
// cross-process tests: see runChild.
func TestMain(m *testing.M) {
	for env, child := range map[string]func(string) error{
		"RINGO_TEST_CHAOS_PRODUCER": runChaosProducer,
		"RINGO_TEST_CHAOS_CONSUMER": runChaosConsumer,
		"RINGO_BENCH_PRODUCER":      runBenchProducer,
	} {
		if spec := os.Getenv(env); spec != "" {
			if err := child(spec); err != nil {
				fmt.Fprintln(os.Stderr, "child:", err)
				os.Exit(1)
			}
			os.Exit(0)
		}
	}
	if spec := os.Getenv("RINGO_TEST_HOLD"); spec != "" {
		if err := runHold(spec); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if spec := os.Getenv("RINGO_TEST_CHILD"); spec != "" {
		if err := runChild(spec); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runChild produces count records into a shared ring, each carrying the
// producer id and a sequence number: spec is "dir|name|id|count|size".
func runChild(spec string) error {
	f := strings.Split(spec, "|")
	if len(f) != 5 {
		return fmt.Errorf("bad child spec %q", spec)
	}
	id, _ := strconv.Atoi(f[2])
	count, _ := strconv.Atoi(f[3])
	size, _ := strconv.Atoi(f[4])
	r, err := Open(f[1], WithDir(f[0]))
	if err != nil {
		return err
	}
	payload := make([]byte, size)
	for seq := 0; seq < count; seq++ {
		binary.LittleEndian.PutUint32(payload, uint32(id))
		binary.LittleEndian.PutUint32(payload[4:], uint32(seq))
		for i := 8; i < size; i++ {
			payload[i] = byte(id + seq + i)
		}
		for {
			err := r.Output(payload, 0)
			if err == nil {
				break
			}
			if !errors.Is(err, ErrFull) {
				return err
			}
			time.Sleep(10 * time.Microsecond)
		}
	}
	return r.Close()
}

// runHold is the child side of TestKilledProducerProcesses: it takes the
// lock or a reservation of a shared ring, says so, and waits to be killed.
func runHold(spec string) error {
	f := strings.Split(spec, "|")
	r, err := Open(f[1], WithDir(f[0]))
	if err != nil {
		return err
	}
	switch f[2] {
	case "hold-lock":
		r.mem.lock(nil)
	case "hold-reservation":
		res, err := r.Reserve(100)
		if err != nil {
			return err
		}
		copy(res.Bytes(), "half-writ")
	case "consume":
		if _, err := NewReader(r); err != nil {
			return err
		}
	case "output-wait":
		// Waits for room in a full ring; the parent drains it or
		// kills this process.
		os.Stdout.WriteString("holding\n")
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		return r.OutputWait(ctx, []byte("waited"), 0)
	}
	os.Stdout.WriteString("holding\n")
	time.Sleep(time.Minute)
	return errors.New("not killed")
}
