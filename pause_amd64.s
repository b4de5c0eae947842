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
