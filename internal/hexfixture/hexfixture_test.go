package hexfixture

import (
	"bytes"
	"testing"
)

func TestParse(t *testing.T) {
	got, err := Parse("# a comment\n00 0a ff 'hi there' # trailing\n\n  7f\n")
	if want := []byte("\x00\x0a\xffhi there\x7f"); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("Parse = %q, %v; want %q", got, err, want)
	}
	for _, bad := range []string{"0", "0g", "001", "'open", "00 'x"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}
