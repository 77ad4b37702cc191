package message

import (
	"testing"

	"github.com/rocketpilot/rocketpilot/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }
