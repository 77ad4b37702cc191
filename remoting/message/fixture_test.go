package message

import (
	"path/filepath"
	"testing"

	"github.com/rocketpilot/rocketpilot/internal/hexfixture"
)

// readFixture reads a testdata fixture (see hexfixture for the format).
func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	return hexfixture.Read(t, filepath.Join("testdata", name))
}
