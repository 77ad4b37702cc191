// Package servertest starts the serving half of the control plane (server.Stack: a cache following a table, and
// go-control-plane's gRPC server over it) on a loopback port for a test: the one harness for tests that need "a
// cache and a gRPC server over a table", in the spirit of Istio's pilot/test/xds. The test feeds the table itself.
package servertest

import (
	"context"
	"testing"
	"time"

	"github.com/rocketpilot/rocketpilot/xds/server"
)

// Start builds a stack from cfg (a new table when cfg.Table is nil; a loopback port unless cfg.Listener or
// cfg.Addr says otherwise; a second of grace unless cfg.Grace says otherwise), serves xDS once the cache holds
// the table as it is now, and returns when streams are served. It stops when the test ends, after the cleanups
// registered later (they run first).
func Start(tb testing.TB, cfg server.StackConfig) *server.Stack {
	tb.Helper()
	if cfg.Grace == 0 {
		cfg.Grace = time.Second
	}
	s, err := server.NewStack(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Stop)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.StartServing(ctx); err != nil {
		tb.Fatalf("the stack does not serve: %v", err)
	}
	return s
}
