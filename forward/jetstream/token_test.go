package jetstream

import (
	"strings"
	"testing"
)

// {host} and {ring} are filled in so that every name gives a valid
// subject token and different names different tokens. They were not: "w*"
// and "w>" (and "w.", "w_") all became "w_", a name with a tab made a
// subject no server takes (published again and again), and an unnamed
// kernel map made an empty token.
func TestTokenInjective(t *testing.T) {
	names := []string{"", "w*", "w>", "w.", "w_", "w%", "w%2E", "w%2A", "a.b", "a_b", "a-b", "a\tb", "a b", "%", "%%", "events",
		"cmd_test_ring", "x\x00", "\xff", "é", ">", "*", "$SYS", "a\nb"}
	seen := map[string]string{}
	for _, n := range names {
		tok := Token(n)
		if other, dup := seen[tok]; dup {
			t.Errorf("Token(%q) = Token(%q) = %q", n, other, tok)
		}
		seen[tok] = n
		subj := expand("ringo.{host}.{ring}", "h", n)
		if err := checkSubject(subj); err != nil {
			t.Errorf("ring %q: %v", n, err)
		}
		if got := strings.Count(subj, "."); got != 2 {
			t.Errorf("ring %q: subject %q has %d tokens, want 3", n, subj, got+1)
		}
		for i := 0; i < len(tok); i++ {
			if c := tok[i]; !tokenByte(c) && c != '%' && !('0' <= c && c <= '9' || 'A' <= c && c <= 'F') {
				t.Errorf("Token(%q) = %q has %q", n, tok, c)
			}
		}
	}
	for name, want := range map[string]string{"events": "events", "cmd_test_ring": "cmd_test_ring", "my.ring": "my%2Ering", "w*": "w%2A", "w>": "w%3E", "": "%", "a%b": "a%25b"} {
		if got := Token(name); got != want {
			t.Errorf("Token(%q) = %q, want %q", name, got, want)
		}
	}
}

func FuzzToken(f *testing.F) {
	f.Add("a.b", "a_b")
	f.Add("w*", "w>")
	f.Add("", "%")
	f.Fuzz(func(t *testing.T, a, b string) {
		if a != b && Token(a) == Token(b) {
			t.Fatalf("Token(%q) = Token(%q) = %q", a, b, Token(a))
		}
		if err := checkSubject(expand("s.{ring}", "h", a)); err != nil {
			t.Fatalf("ring %q: %v", a, err)
		}
	})
}
