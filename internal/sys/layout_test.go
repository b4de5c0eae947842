package sys

import (
	"testing"
	"unsafe"
)

// The attribute structs must have the kernel's offsets.
func TestAttrLayout(t *testing.T) {
	var p progLoadAttr
	for name, got := range map[string]uintptr{
		"prog_name":     unsafe.Offsetof(p.progName),
		"prog_btf_fd":   unsafe.Offsetof(p.progBTFFD),
		"func_info":     unsafe.Offsetof(p.funcInfo),
		"func_info_cnt": unsafe.Offsetof(p.funcInfoCnt),
	} {
		want := map[string]uintptr{"prog_name": 48, "prog_btf_fd": 72, "func_info": 80, "func_info_cnt": 88}[name]
		if got != want {
			t.Errorf("%s at %d, want %d", name, got, want)
		}
	}
	var b btfLoadAttr
	if unsafe.Offsetof(b.btfSize) != 16 || unsafe.Offsetof(b.logLevel) != 24 {
		t.Errorf("btf attr: size at %d, log level at %d", unsafe.Offsetof(b.btfSize), unsafe.Offsetof(b.logLevel))
	}
	var r testRunAttr
	if unsafe.Offsetof(r.repeat) != 32 || unsafe.Offsetof(r.ctxIn) != 48 || unsafe.Sizeof(r) != 80 {
		t.Errorf("test run attr: repeat at %d, ctx_in at %d, size %d", unsafe.Offsetof(r.repeat), unsafe.Offsetof(r.ctxIn), unsafe.Sizeof(r))
	}
	var m mapCreateAttr
	if unsafe.Offsetof(m.mapName) != 28 {
		t.Errorf("map_name at %d", unsafe.Offsetof(m.mapName))
	}
}
