// Package producer assembles the BPF programs that the ringbuf module's tests
// and benchmarks write kernel ring buffers with, in Go with cilium/ebpf's asm
// package (no clang). They are raw tracepoint programs run with
// BPF_PROG_TEST_RUN: Messages writes a fixed list of records (any sizes,
// flags, reserve+submit, reserve+discard or bpf_ringbuf_output), Loop writes
// as many records of one size as its run asks for, with bpf_loop.
//
// Every record's payload is a function of its sequence number (Payload), so
// a reader that loses, repeats or mangles a record is caught.
package producer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"
)

// Golden is the multiplier of a payload's words (Payload).
const Golden = 0x9E3779B97F4A7C15

// Wake-up flags of bpf_ringbuf_submit and bpf_ringbuf_output.
const (
	NoWakeup    = 1 // BPF_RB_NO_WAKEUP
	ForceWakeup = 2 // BPF_RB_FORCE_WAKEUP
)

// Payload returns the n bytes of the record with sequence number seq: the
// 64-bit word at each offset o (a multiple of 8 with o+8 <= n) is
// seq*Golden+o, and each byte j past the last whole word is byte(seq+j).
func Payload(seq uint64, n int) []byte {
	b := make([]byte, n)
	o := 0
	for ; o+8 <= n; o += 8 {
		binary.NativeEndian.PutUint64(b[o:], seq*Golden+uint64(o))
	}
	for j := o; j < n; j++ {
		b[j] = byte(seq + uint64(j))
	}
	return b
}

// SeqOf returns the sequence number of a record of at least 8 bytes
// written with a full Payload.
func SeqOf(b []byte) uint64 { return binary.NativeEndian.Uint64(b) * goldenInverse }

// goldenInverse is Golden's inverse modulo 2^64 (Newton's iteration; Golden
// is odd).
var goldenInverse = func() uint64 {
	x := uint64(Golden)
	for range 6 {
		x *= 2 - Golden*x
	}
	return x
}()

// Message is one record of a Messages program.
type Message struct {
	Size    int   // payload bytes
	Flags   int32 // NoWakeup, ForceWakeup or 0 (adaptive)
	Discard bool  // reserve, then bpf_ringbuf_discard instead of submit
	Output  bool  // bpf_ringbuf_output from the stack (Size <= 256) instead of reserve
}

// Messages loads a program that writes msgs into m in order, message i with
// sequence number args[0]+i. Its run returns how many of them the ring
// refused (no room). The caller closes the program.
func Messages(m *ebpf.Map, msgs ...Message) (*ebpf.Program, error) {
	insns := asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R8, asm.R6, 0, asm.DWord), // base sequence number
		asm.Mov.Imm(asm.R9, 0),                    // refused
	}
	for i, msg := range msgs {
		fail, next := fmt.Sprintf("fail%d", i), fmt.Sprintf("next%d", i)
		if msg.Output {
			if msg.Size > 256 || msg.Size < 1 {
				return nil, fmt.Errorf("producer: output of %d bytes: 1 to 256 from the stack", msg.Size)
			}
			off := int16(-(msg.Size + 7) &^ 7)
			insns = append(insns, asm.Mov.Reg(asm.R7, asm.RFP), asm.Add.Imm(asm.R7, int32(off)))
			insns = append(insns, fill(asm.R7, asm.R8, int64(i), msg.Size, true)...)
			insns = append(insns,
				asm.LoadMapPtr(asm.R1, m.FD()),
				asm.Mov.Reg(asm.R2, asm.R7),
				asm.Mov.Imm(asm.R3, int32(msg.Size)),
				asm.Mov.Imm(asm.R4, msg.Flags),
				asm.FnRingbufOutput.Call(),
				asm.JEq.Imm(asm.R0, 0, next),
				asm.Add.Imm(asm.R9, 1).WithSymbol(fail),
			)
			insns = append(insns, asm.Mov.Imm(asm.R0, 0).WithSymbol(next))
			continue
		}
		finish := asm.FnRingbufSubmit
		if msg.Discard {
			finish = asm.FnRingbufDiscard
		}
		insns = append(insns,
			asm.LoadMapPtr(asm.R1, m.FD()),
			asm.Mov.Imm(asm.R2, int32(msg.Size)),
			asm.Mov.Imm(asm.R3, 0),
			asm.FnRingbufReserve.Call(),
			asm.JEq.Imm(asm.R0, 0, fail),
			asm.Mov.Reg(asm.R7, asm.R0),
		)
		insns = append(insns, fill(asm.R7, asm.R8, int64(i), msg.Size, true)...)
		insns = append(insns,
			asm.Mov.Reg(asm.R1, asm.R7),
			asm.Mov.Imm(asm.R2, msg.Flags),
			finish.Call(),
			asm.Ja.Label(next),
			asm.Add.Imm(asm.R9, 1).WithSymbol(fail),
			asm.Mov.Imm(asm.R0, 0).WithSymbol(next),
		)
	}
	insns = append(insns, asm.Mov.Reg(asm.R0, asm.R9), asm.Return())
	return load(insns)
}

// fill writes the payload of the record with sequence number seq+add
// (seq in register seq) at dst: all of Payload when full, else the head
// (seq at offset 0) and tail (seq*Golden in the last 8 bytes) that
// Loop's benchmark records carry. It uses R2 to R5.
func fill(dst, seq asm.Register, add int64, n int, full bool) asm.Instructions {
	insns := asm.Instructions{
		asm.Mov.Reg(asm.R2, seq),
		asm.Add.Imm(asm.R2, int32(add)),
		asm.LoadImm(asm.R4, golden, asm.DWord),
		asm.Mov.Reg(asm.R3, asm.R2),
		asm.Mul.Reg(asm.R3, asm.R4),
	}
	if !full {
		if n >= 8 {
			insns = append(insns, asm.StoreMem(dst, 0, asm.R2, asm.DWord))
		}
		if n >= 16 {
			insns = append(insns, asm.StoreMem(dst, int16(n-8), asm.R3, asm.DWord))
		}
		return insns
	}
	o := 0
	for ; o+8 <= n; o += 8 {
		insns = append(insns,
			asm.Mov.Reg(asm.R5, asm.R3),
			asm.Add.Imm(asm.R5, int32(o)),
			asm.StoreMem(dst, int16(o), asm.R5, asm.DWord),
		)
	}
	for j := o; j < n; j++ {
		insns = append(insns,
			asm.Mov.Reg(asm.R5, asm.R2),
			asm.Add.Imm(asm.R5, int32(j)),
			asm.StoreMem(dst, int16(j), asm.R5, asm.Byte),
		)
	}
	return insns
}

// Loop loads a program that writes args[0] records of size bytes into m
// with bpf_loop (at most 1<<23 a run), submitting them with the flags
// args[1] (or discarding them all, when discard is set), record k of the
// run with sequence number args[2]+k. The payload is all of Payload when
// full, else only a head and a tail (see fill). Its run returns how many
// reservations the ring refused.
func Loop(m *ebpf.Map, size int, discard, full bool) (*ebpf.Program, error) {
	finish := asm.FnRingbufSubmit
	if discard {
		finish = asm.FnRingbufDiscard
	}
	// The state bpf_loop hands its callback, on the program's stack:
	// fp-32 next sequence number, fp-24 flags, fp-16 refused.
	main := asm.Instructions{
		btf.WithFuncMetadata(asm.Mov.Reg(asm.R6, asm.R1), &btf.Func{
			Name: "produce", Linkage: btf.GlobalFunc,
			Type: &btf.FuncProto{Return: intType, Params: []btf.FuncParam{{Name: "ctx", Type: voidPtr}}},
		}),
		asm.LoadMem(asm.R1, asm.R6, 16, asm.DWord),
		asm.StoreMem(asm.RFP, -32, asm.R1, asm.DWord),
		asm.LoadMem(asm.R1, asm.R6, 8, asm.DWord),
		asm.StoreMem(asm.RFP, -24, asm.R1, asm.DWord),
		asm.Mov.Imm(asm.R1, 0),
		asm.StoreMem(asm.RFP, -16, asm.R1, asm.DWord),
		asm.StoreMem(asm.RFP, -8, asm.R1, asm.DWord),
		asm.LoadMem(asm.R1, asm.R6, 0, asm.DWord),
		asm.Instruction{OpCode: asm.LoadImmOp(asm.DWord), Dst: asm.R2, Src: asm.PseudoFunc, Constant: -1}.WithReference("record"),
		asm.Mov.Reg(asm.R3, asm.RFP),
		asm.Add.Imm(asm.R3, -32),
		asm.Mov.Imm(asm.R4, 0),
		asm.FnLoop.Call(),
		asm.LoadMem(asm.R0, asm.RFP, -16, asm.DWord),
		asm.Return(),
	}
	cb := asm.Instructions{
		btf.WithFuncMetadata(asm.Mov.Reg(asm.R6, asm.R2), &btf.Func{
			Name: "record", Linkage: btf.StaticFunc,
			Type: &btf.FuncProto{Return: intType, Params: []btf.FuncParam{{Name: "i", Type: intType}, {Name: "state", Type: voidPtr}}},
		}).WithSymbol("record"),
		asm.LoadMapPtr(asm.R1, m.FD()),
		asm.Mov.Imm(asm.R2, int32(size)),
		asm.Mov.Imm(asm.R3, 0),
		asm.FnRingbufReserve.Call(),
		asm.JEq.Imm(asm.R0, 0, "full"),
		asm.Mov.Reg(asm.R7, asm.R0),
		asm.LoadMem(asm.R8, asm.R6, 0, asm.DWord),
	}
	cb = append(cb, fill(asm.R7, asm.R8, 0, size, full)...)
	cb = append(cb,
		asm.Mov.Reg(asm.R1, asm.R7),
		asm.LoadMem(asm.R2, asm.R6, 8, asm.DWord),
		finish.Call(),
		asm.Ja.Label("next"),
		asm.LoadMem(asm.R1, asm.R6, 16, asm.DWord).WithSymbol("full"),
		asm.Add.Imm(asm.R1, 1),
		asm.StoreMem(asm.R6, 16, asm.R1, asm.DWord),
		asm.LoadMem(asm.R1, asm.R6, 0, asm.DWord).WithSymbol("next"),
		asm.Add.Imm(asm.R1, 1),
		asm.StoreMem(asm.R6, 0, asm.R1, asm.DWord),
		asm.Mov.Imm(asm.R0, 0),
		asm.Return(),
	)
	return load(append(main, cb...))
}

var (
	intType = &btf.Int{Name: "int", Size: 4, Encoding: btf.Signed}
	voidPtr = &btf.Pointer{Target: &btf.Void{}}
)

func load(insns asm.Instructions) (*ebpf.Program, error) {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "ringbuf_test",
		Type:         ebpf.RawTracepoint,
		License:      "GPL",
		Instructions: insns,
	})
	if err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("producer: load: %+v", ve)
		}
		return nil, fmt.Errorf("producer: load: %w", err)
	}
	return prog, nil
}

// Run runs prog once with the arguments args (at most four, the rest
// zero), on CPU cpu when cpu >= 0, and returns what it returned.
func Run(prog *ebpf.Program, cpu int, args ...uint64) (uint32, error) {
	var ctx [4]uint64
	copy(ctx[:], args)
	opts := &ebpf.RunOptions{Context: ctx[:]}
	if cpu >= 0 {
		opts.CPU, opts.Flags = uint32(cpu), unix.BPF_F_TEST_RUN_ON_CPU
	}
	ret, err := prog.Run(opts)
	if err != nil {
		return 0, fmt.Errorf("producer: run: %w", err)
	}
	return ret, nil
}

// NewRing creates a BPF_MAP_TYPE_RINGBUF map of size bytes (a power of two,
// at least a page; 0 means a page).
func NewRing(size int) (*ebpf.Map, error) {
	if size == 0 {
		size = os.Getpagesize()
	}
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "ringbuf_test", Type: ebpf.RingBuf, MaxEntries: uint32(size)})
	if err != nil {
		return nil, fmt.Errorf("producer: create a ringbuf map of %d bytes: %w", size, err)
	}
	return m, nil
}

// golden is Golden as the immediate of a 64-bit load.
var golden = func() int64 { g := uint64(Golden); return int64(g) }()
