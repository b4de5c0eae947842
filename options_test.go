package ringo

import (
	"errors"
	"strings"
	"syscall"
	"testing"
)

// One option type for every constructor; an option that has no meaning for
// one is refused, saying why, not ignored.
func TestOptionsRefusedWhereMeaningless(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		what string
		err  error
		want string
	}{
		{"New with WithDir", func() error { _, err := New(4096, WithDir(dir)); return err }(), "New does not take WithDir"},
		{"New with WithGroupAccess", func() error { _, err := New(4096, WithGroupAccess()); return err }(), "New does not take WithGroupAccess"},
		{"Create with WithSingleProducer", func() error { _, err := Create("x", 4096, WithDir(dir), WithSingleProducer()); return err }(), "Create does not take WithSingleProducer"},
		{"Create with WithName", func() error { _, err := Create("x", 4096, WithDir(dir), WithName("y")); return err }(), "Create does not take WithName"},
		{"Open with WithOverwrite", func() error { _, err := Open("x", WithDir(dir), WithOverwrite()); return err }(), "Open does not take WithOverwrite"},
		{"Remove with WithGroupAccess", Remove("x", WithDir(dir), WithGroupAccess()), "Remove does not take WithGroupAccess"},
	} {
		if !errors.Is(c.err, syscall.EINVAL) || !strings.Contains(errText(c.err), c.want) {
			t.Errorf("%s: %v, want %q", c.what, c.err, c.want)
		}
	}
	// The same options where they mean something.
	r, err := New(4096, WithName("named"), WithOverwrite(), WithSingleProducer())
	if err != nil || r.String() != "named" {
		t.Fatalf("New with its options: %v", err)
	}
	r.Close()
	s, err := Create("shared", 4096, WithDir(dir), WithGroupAccess(), WithOverwrite())
	if err != nil {
		t.Fatalf("Create with its options: %v", err)
	}
	s.Close()
	if err := Remove("shared", WithDir(dir)); err != nil {
		t.Fatal(err)
	}
}

func errText(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}
