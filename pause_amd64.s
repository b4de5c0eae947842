#include "textflag.h"

// func cpuPause(n uint32)
// Executes the PAUSE instruction n times: a spin-wait hint that frees the
// core's resources for a sibling thread and saves power while waiting.
TEXT ·cpuPause(SB), NOSPLIT, $0-4
	MOVL n+0(FP), AX
again:
	PAUSE
	DECL AX
	JNZ again
	RET

// func prefetchWrite(p *byte)
// PREFETCHW, spelled in bytes (0F 0D /1) for assemblers that lack it.
TEXT ·prefetchWrite(SB), NOSPLIT, $0-8
	MOVQ p+0(FP), AX
	BYTE $0x0F; BYTE $0x0D; BYTE $0x08 // PREFETCHW (AX)
	RET

// func prefetchRead(p *byte)
// PREFETCHT0: the cache line at p into every cache level.
TEXT ·prefetchRead(SB), NOSPLIT, $0-8
	MOVQ p+0(FP), AX
	PREFETCHT0 (AX)
	RET
