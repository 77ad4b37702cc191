package remoting

import (
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// readFixture parses a testdata/*.frame file: hex byte pairs and 'quoted text', with # comments.
func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	for n, line := range strings.Split(string(src), "\n") {
		for line = strings.TrimSpace(line); line != ""; line = strings.TrimSpace(line) {
			switch {
			case line[0] == '#':
				line = ""
			case line[0] == '\'':
				end := strings.IndexByte(line[1:], '\'')
				if end < 0 {
					t.Fatalf("%s:%d: unterminated text", name, n+1)
				}
				out = append(out, line[1:1+end]...)
				line = line[2+end:]
			default:
				b, err := hex.DecodeString(line[:2])
				if err != nil || len(line) > 2 && line[2] != ' ' {
					t.Fatalf("%s:%d: bad hex %q", name, n+1, line)
				}
				out = append(out, b...)
				line = line[2:]
			}
		}
	}
	return out
}
