package ringo

import (
	"errors"
	"strings"
	"syscall"
	"testing"
)

func TestValidateSize(t *testing.T) {
	for _, tc := range []struct {
		size    int64
		ok      bool
		message string // part of the error
	}{
		{4096, true, ""},
		{8192, true, ""},
		{1 << 20, true, ""},
		{maxSize, true, ""},
		{0, false, "not positive"},
		{-4096, false, "not positive"},
		{3000, false, "not a power of two: the nearest valid size is 4096"},
		{12288, false, "not a power of two: the nearest valid size is 16384"}, // tie: the larger
		{9000, false, "not a power of two: the nearest valid size is 8192"},
		{100000, false, "nearest valid size is 131072"},
		{2048, false, "not a multiple of the page size (4096): the nearest valid size is 4096"},
		{8, false, "not a multiple of the page size"},
		{maxSize * 2, false, "over the largest ring"},
	} {
		err := validateSize(tc.size)
		if tc.ok {
			if err != nil {
				t.Errorf("validateSize(%d) = %v, want nil", tc.size, err)
			}
			continue
		}
		if !errors.Is(err, syscall.EINVAL) {
			t.Errorf("validateSize(%d) = %v, want an error wrapping EINVAL", tc.size, err)
			continue
		}
		if !strings.Contains(err.Error(), tc.message) {
			t.Errorf("validateSize(%d) = %q, want it to say %q", tc.size, err, tc.message)
		}
	}
}

func TestNewRefusesInvalidSizes(t *testing.T) {
	for _, size := range []int{0, 100, 4095, 6144, 2048} {
		r, err := New(size)
		if err == nil {
			r.Close()
			t.Errorf("New(%d) succeeded", size)
		} else if !errors.Is(err, syscall.EINVAL) {
			t.Errorf("New(%d) = %v, want EINVAL", size, err)
		}
	}
}

func TestMapSpecValidate(t *testing.T) {
	good := MapSpec{Type: RingBuf, MaxEntries: 4096}
	if err := good.Validate(); err != nil {
		t.Fatalf("valid spec refused: %v", err)
	}
	user := good
	user.Type = UserRingBuf
	if err := user.Validate(); err != nil {
		t.Fatalf("valid user ring spec refused: %v", err)
	}
	numa := good
	numa.Flags = FlagNUMANode
	if err := numa.Validate(); err != nil {
		t.Fatalf("BPF_F_NUMA_NODE refused: %v", err)
	}
	cases := map[string]MapSpec{
		"key size is 4":         {Type: RingBuf, KeySize: 4, MaxEntries: 4096},
		"value size is 8":       {Type: RingBuf, ValueSize: 8, MaxEntries: 4096},
		"not a power of two":    {Type: RingBuf, MaxEntries: 5000},
		"not positive":          {Type: RingBuf},
		"not a multiple":        {Type: RingBuf, MaxEntries: 1024},
		"not ringbuf (27)":      {Type: 1, MaxEntries: 4096},
		"BPF_F_RB_OVERWRITE":    {Type: RingBuf, MaxEntries: 4096, Flags: 1 << 19},
		"are not accepted":      {Type: RingBuf, MaxEntries: 4096, Flags: 1 << 20},
		"map flags 0x1 are not": {Type: UserRingBuf, MaxEntries: 4096, Flags: 1},
	}
	for want, spec := range cases {
		err := spec.Validate()
		if !errors.Is(err, syscall.EINVAL) || !strings.Contains(err.Error(), want) {
			t.Errorf("%+v: got %v, want EINVAL saying %q", spec, err, want)
		}
	}
	// Every flag bit but BPF_F_NUMA_NODE is refused, as on Linux 6.18.
	for bit := 0; bit < 32; bit++ {
		spec := MapSpec{Type: RingBuf, MaxEntries: 4096, Flags: 1 << bit}
		if err := spec.Validate(); (err == nil) != (spec.Flags == FlagNUMANode) {
			t.Errorf("flag bit %d: Validate() = %v", bit, err)
		}
	}
	// The kernel checks flags before sizes: both wrong names the flags.
	err := MapSpec{Type: RingBuf, KeySize: 4, Flags: 1}.Validate()
	if err == nil || !strings.Contains(err.Error(), "flags") {
		t.Errorf("flags checked first: got %v", err)
	}
	if err := (MapSpec{Type: RingBuf, KeySize: 4, MaxEntries: 4096}).Validate(); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("Validate with key size 4: %v", err)
	}
}
