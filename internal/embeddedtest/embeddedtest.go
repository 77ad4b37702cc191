// Package embeddedtest starts embedded NameServers for tests: on a loopback port, loaded as the test asks, and
// closed when the test ends. Only tests import it.
package embeddedtest

import (
	"testing"

	"github.com/rocketpilot/rocketpilot/nameserver/embedded"
)

// Start starts an embedded NameServer holding what load puts in it (nothing when load is nil).
func Start(tb testing.TB, load func(*embedded.NameServer)) *embedded.NameServer {
	tb.Helper()
	ns := embedded.New(embedded.Options{})
	if load != nil {
		load(ns)
	}
	if err := ns.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ns.Close() })
	return ns
}

// StartDemo starts an embedded NameServer with the demo data set (embedded.LoadDemo).
func StartDemo(tb testing.TB) *embedded.NameServer {
	tb.Helper()
	return Start(tb, embedded.LoadDemo)
}
