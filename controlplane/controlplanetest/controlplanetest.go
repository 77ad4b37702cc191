// Package controlplanetest starts the control-plane assembly on a loopback port for a test: the one harness for
// tests that need "a cache and a gRPC server over a table", in the spirit of Istio's pilot/test/xds.
package controlplanetest

import (
	"context"
	"testing"
	"time"

	"github.com/rocketpilot/rocketpilot/controlplane"
)

// Start builds the assembly from cfg (a new table when cfg.Table is nil; a loopback port unless cfg.Listener or
// cfg.Addr says otherwise; a second of grace unless cfg.Grace says otherwise), serves xDS once the cache holds
// the table as it is now, and returns when streams are served. It stops when the test ends, after the cleanups
// registered later (they run first).
func Start(tb testing.TB, cfg controlplane.Config) *controlplane.ControlPlane {
	tb.Helper()
	if cfg.Grace == 0 {
		cfg.Grace = time.Second
	}
	cp, err := controlplane.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(cp.Stop)
	cp.Start(context.Background())
	cp.Serve()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := cp.WaitReady(ctx); err != nil {
		tb.Fatalf("the control plane does not serve: %v", err)
	}
	return cp
}
