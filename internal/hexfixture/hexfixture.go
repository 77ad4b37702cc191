// Package hexfixture reads the byte fixtures of the protocol tests: text files of hex byte pairs and 'quoted
// text', with # comments to the end of a line, so that a fixture can say which Java class wrote each field.
package hexfixture

import (
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"
)

// Parse turns a fixture's text into its bytes.
func Parse(src string) ([]byte, error) {
	var out []byte
	for n, line := range strings.Split(src, "\n") {
		for line = strings.TrimSpace(line); line != ""; line = strings.TrimSpace(line) {
			switch {
			case line[0] == '#':
				line = ""
			case line[0] == '\'':
				end := strings.IndexByte(line[1:], '\'')
				if end < 0 {
					return nil, fmt.Errorf("line %d: unterminated text", n+1)
				}
				out = append(out, line[1:1+end]...)
				line = line[2+end:]
			default:
				b, err := hex.DecodeString(line[:min(2, len(line))])
				if err != nil || len(line) > 2 && line[2] != ' ' {
					return nil, fmt.Errorf("line %d: bad hex %q", n+1, line)
				}
				out = append(out, b...)
				line = line[2:]
			}
		}
	}
	return out, nil
}

// Read parses the fixture file at path, failing the test when it cannot.
func Read(tb testing.TB, path string) []byte {
	tb.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	b, err := Parse(string(src))
	if err != nil {
		tb.Fatalf("%s: %v", path, err)
	}
	return b
}
