package ringo

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/ringo-bpf/ringo/internal/sys"
)

// BPF instructions for the hand-assembled test programs, so kernel tests
// need no clang.
const (
	opLdImm64 = 0x18 // BPF_LD | BPF_DW | BPF_IMM
	opMovImm  = 0xb7 // BPF_ALU64 | BPF_MOV | BPF_K
	opMovReg  = 0xbf // BPF_ALU64 | BPF_MOV | BPF_X
	opAddImm  = 0x07 // BPF_ALU64 | BPF_ADD | BPF_K
	opStxDW   = 0x7b // BPF_STX | BPF_MEM | BPF_DW
	opJeqImm  = 0x15 // BPF_JMP | BPF_JEQ | BPF_K
	opCall    = 0x85
	opExit    = 0x95

	pseudoMapFD = 1

	helperRingbufOutput  = 130
	helperRingbufReserve = 131
	helperRingbufSubmit  = 132
	helperRingbufDiscard = 133
	helperRingbufQuery   = 134

	progTypeSocketFilter = 1
)

func insn(op uint8, dst, src uint8, off int16, imm int32) sys.Instruction {
	return sys.Instruction{Op: op, Regs: dst | src<<4, Offset: off, Imm: imm}
}

func ldMap(dst uint8, fd int) []sys.Instruction {
	return []sys.Instruction{insn(opLdImm64, dst, pseudoMapFD, 0, int32(fd)), {}}
}

func join(parts ...[]sys.Instruction) []sys.Instruction {
	var all []sys.Instruction
	for _, p := range parts {
		all = append(all, p...)
	}
	return all
}

// outputProgram writes one 8-byte record with bpf_ringbuf_output: the
// ring's producer position before it (from bpf_ringbuf_query), so that
// every record is distinct. It returns the helper's result.
func outputProgram(mapFD int, flags int32) []sys.Instruction {
	return join(
		ldMap(1, mapFD),
		[]sys.Instruction{
			insn(opMovImm, 2, 0, 0, int32(ProducerPos)),
			insn(opCall, 0, 0, 0, helperRingbufQuery),
			insn(opStxDW, 10, 0, -8, 0),
		},
		ldMap(1, mapFD),
		[]sys.Instruction{
			insn(opMovReg, 2, 10, 0, 0),
			insn(opAddImm, 2, 0, 0, -8),
			insn(opMovImm, 3, 0, 0, 8),
			insn(opMovImm, 4, 0, 0, flags),
			insn(opCall, 0, 0, 0, helperRingbufOutput),
			insn(opExit, 0, 0, 0, 0),
		},
	)
}

// reserveProgram reserves a size-byte record, writes the producer position
// after the reservation into its first 8 bytes, and submits or discards it
// with flags. It returns 0, or 1 when the reservation failed.
func reserveProgram(mapFD int, size int32, discard bool, flags int32) []sys.Instruction {
	finish := int32(helperRingbufSubmit)
	if discard {
		finish = helperRingbufDiscard
	}
	body := join(
		ldMap(1, mapFD),
		[]sys.Instruction{
			insn(opMovImm, 2, 0, 0, size),
			insn(opMovImm, 3, 0, 0, 0),
			insn(opCall, 0, 0, 0, helperRingbufReserve),
		},
	)
	rest := join(
		[]sys.Instruction{insn(opMovReg, 6, 0, 0, 0)},
		ldMap(1, mapFD),
		[]sys.Instruction{
			insn(opMovImm, 2, 0, 0, int32(ProducerPos)),
			insn(opCall, 0, 0, 0, helperRingbufQuery),
			insn(opStxDW, 6, 0, 0, 0),
			insn(opMovReg, 1, 6, 0, 0),
			insn(opMovImm, 2, 0, 0, flags),
			insn(opCall, 0, 0, 0, finish),
			insn(opMovImm, 0, 0, 0, 0),
			insn(opExit, 0, 0, 0, 0),
		},
	)
	failed := []sys.Instruction{insn(opMovImm, 0, 0, 0, 1), insn(opExit, 0, 0, 0, 0)}
	return join(body, []sys.Instruction{insn(opJeqImm, 0, 0, int16(len(rest)), 0)}, rest, failed)
}

// prog is a loaded test program.
type prog struct {
	t  testing.TB
	fd int
}

func loadProg(t testing.TB, insns []sys.Instruction) *prog {
	t.Helper()
	fd, err := sys.ProgLoad(progTypeSocketFilter, insns, "GPL")
	if err != nil {
		t.Fatalf("load test program: %v", err)
	}
	t.Cleanup(func() { closeFD(fd) })
	return &prog{t, fd}
}

// run runs the program once and returns its return value as a signed int.
func (p *prog) run() int32 {
	p.t.Helper()
	ret, err := sys.ProgTestRun(p.fd, make([]byte, 64), 1)
	if err != nil {
		p.t.Fatalf("BPF_PROG_TEST_RUN: %v", err)
	}
	return int32(ret)
}

func le64(b []byte) uint64 { return binary.LittleEndian.Uint64(b) }

// newRand returns a seeded generator, so that a failing sequence replays.
func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x7269_6e67)) }

const (
	opJneImm         = 0x55 // BPF_JMP | BPF_JNE | BPF_K
	pseudoFunc       = 4    // ld_imm64 src: address of a subprogram
	helperDynptrRead = 201
	helperUserDrain  = 209
)

// drainProgram calls bpf_user_ringbuf_drain on the user ring userFD with
// flags, and returns what it returns. Its callback copies the first 16
// bytes of each sample (samples shorter than that are skipped) into the
// kernel ring outFD with bpf_ringbuf_output, for the test to read.
func drainProgram(userFD, outFD int, flags int32) []sys.Instruction {
	main := join(
		ldMap(1, userFD),
		[]sys.Instruction{insn(opLdImm64, 2, pseudoFunc, 0, 0), {}}, // patched below
		[]sys.Instruction{
			insn(opMovImm, 3, 0, 0, 0),
			insn(opMovImm, 4, 0, 0, flags),
			insn(opCall, 0, 0, 0, helperUserDrain),
			insn(opExit, 0, 0, 0, 0),
		},
	)
	out := join(
		ldMap(1, outFD),
		[]sys.Instruction{
			insn(opMovReg, 2, 10, 0, 0),
			insn(opAddImm, 2, 0, 0, -16),
			insn(opMovImm, 3, 0, 0, 16),
			insn(opMovImm, 4, 0, 0, 0),
			insn(opCall, 0, 0, 0, helperRingbufOutput),
		},
	)
	callback := join(
		[]sys.Instruction{
			insn(opMovReg, 6, 1, 0, 0), // the sample's dynptr
			insn(opMovReg, 1, 10, 0, 0),
			insn(opAddImm, 1, 0, 0, -16),
			insn(opMovImm, 2, 0, 0, 16),
			insn(opMovReg, 3, 6, 0, 0),
			insn(opMovImm, 4, 0, 0, 0),
			insn(opMovImm, 5, 0, 0, 0),
			insn(opCall, 0, 0, 0, helperDynptrRead),
			insn(opJneImm, 0, 0, int16(len(out)), 0),
		},
		out,
		[]sys.Instruction{insn(opMovImm, 0, 0, 0, 0), insn(opExit, 0, 0, 0, 0)},
	)
	// The callback starts right after main; ld_imm64's immediate is its
	// offset from the instruction after the ld_imm64.
	main[2].Imm = int32(len(main) - 3)
	return join(main, callback)
}

// funcBTF returns a BTF blob describing n functions int f(void), types 3 to
// n+2, for the func_info of programs with callbacks. The kernel checks the
// types of global functions only; these are static.
func funcBTF(n int) []byte {
	strs := []byte("\x00int\x00f\x00")
	var types []byte
	u32 := func(v uint32) { types = binary.LittleEndian.AppendUint32(types, v) }
	// [1] INT "int": 4 bytes, signed, 32 bits.
	u32(1)
	u32(1 << 24)
	u32(4)
	u32(1<<24 | 32)
	// [2] FUNC_PROTO int (void)
	u32(0)
	u32(13 << 24)
	u32(1)
	// [3..] FUNC "f", static
	for i := 0; i < n; i++ {
		u32(5)
		u32(12 << 24)
		u32(2)
	}
	var b []byte
	b = binary.LittleEndian.AppendUint16(b, 0xeb9f)
	b = append(b, 1, 0)
	b = binary.LittleEndian.AppendUint32(b, 24)
	b = binary.LittleEndian.AppendUint32(b, 0)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(types)))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(types)))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(strs)))
	return append(append(b, types...), strs...)
}

// loadProgFuncs loads a program whose functions start at the given
// instructions (the first at 0).
func loadProgFuncs(t testing.TB, insns []sys.Instruction, starts ...uint32) *prog {
	t.Helper()
	btf, err := sys.BTFLoad(funcBTF(len(starts)))
	if err != nil {
		t.Fatalf("load BTF: %v", err)
	}
	defer closeFD(btf)
	var funcs []sys.FuncInfo
	for i, s := range starts {
		funcs = append(funcs, sys.FuncInfo{InsnOff: s, TypeID: uint32(3 + i)})
	}
	fd, err := sys.ProgLoadBTF(progTypeSocketFilter, insns, "GPL", btf, funcs)
	if err != nil {
		t.Fatalf("load test program: %v", err)
	}
	t.Cleanup(func() { closeFD(fd) })
	return &prog{t, fd}
}

const (
	helperReserveDynptr = 198
	helperSubmitDynptr  = 199
	helperDiscardDynptr = 200
	helperDynptrWrite   = 202
)

// dynptrProgram is reserveProgram with the dynptr helpers:
// bpf_ringbuf_reserve_dynptr, bpf_dynptr_write of the producer position
// after the reservation, then bpf_ringbuf_submit_dynptr or
// bpf_ringbuf_discard_dynptr (which the verifier demands even when the
// reservation failed). It returns the reservation's result.
func dynptrProgram(mapFD int, size int32, discard bool, flags int32) []sys.Instruction {
	finish := int32(helperSubmitDynptr)
	if discard {
		finish = helperDiscardDynptr
	}
	return join(
		ldMap(1, mapFD),
		[]sys.Instruction{
			insn(opMovImm, 2, 0, 0, size),
			insn(opMovImm, 3, 0, 0, 0),
			insn(opMovReg, 4, 10, 0, 0),
			insn(opAddImm, 4, 0, 0, -16),
			insn(opCall, 0, 0, 0, helperReserveDynptr),
			insn(opMovReg, 6, 0, 0, 0),
		},
		ldMap(1, mapFD),
		[]sys.Instruction{
			insn(opMovImm, 2, 0, 0, int32(ProducerPos)),
			insn(opCall, 0, 0, 0, helperRingbufQuery),
			insn(opStxDW, 10, 0, -24, 0),
			insn(opMovReg, 1, 10, 0, 0),
			insn(opAddImm, 1, 0, 0, -16),
			insn(opMovImm, 2, 0, 0, 0),
			insn(opMovReg, 3, 10, 0, 0),
			insn(opAddImm, 3, 0, 0, -24),
			insn(opMovImm, 4, 0, 0, 8),
			insn(opMovImm, 5, 0, 0, 0),
			insn(opCall, 0, 0, 0, helperDynptrWrite),
			insn(opMovReg, 1, 10, 0, 0),
			insn(opAddImm, 1, 0, 0, -16),
			insn(opMovImm, 2, 0, 0, flags),
			insn(opCall, 0, 0, 0, finish),
			insn(opMovReg, 0, 6, 0, 0),
			insn(opExit, 0, 0, 0, 0),
		},
	)
}

// queryProgram writes one 32-byte record holding what bpf_ringbuf_query
// returned for the four properties, in order, before the record.
func queryProgram(mapFD int) []sys.Instruction {
	var insns []sys.Instruction
	for p := 0; p < 4; p++ {
		insns = append(insns, ldMap(1, mapFD)...)
		insns = append(insns,
			insn(opMovImm, 2, 0, 0, int32(p)),
			insn(opCall, 0, 0, 0, helperRingbufQuery),
			insn(opStxDW, 10, 0, int16(-32+8*p), 0),
		)
	}
	insns = append(insns, ldMap(1, mapFD)...)
	return append(insns,
		insn(opMovReg, 2, 10, 0, 0),
		insn(opAddImm, 2, 0, 0, -32),
		insn(opMovImm, 3, 0, 0, 32),
		insn(opMovImm, 4, 0, 0, 0),
		insn(opCall, 0, 0, 0, helperRingbufOutput),
		insn(opExit, 0, 0, 0, 0),
	)
}
