// Package controlplanetest starts a whole control plane for tests that need one behind their clients (a sidecar's
// tests, the interop module): built, started, synced and serving xDS, stopped when the test ends.
package controlplanetest

import (
	"context"
	"testing"
	"time"

	"github.com/rocketpilot/rocketpilot/controlplane"
)

// Start builds the control plane from cfg, starts it, waits (30 s at most) for its first sync and for xDS to
// serve, and stops it when the test ends (a test may stop it first).
func Start(tb testing.TB, cfg controlplane.Config) *controlplane.ControlPlane {
	tb.Helper()
	cp, err := controlplane.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(cp.Stop)
	if err := cp.Start(context.Background()); err != nil { // its life: until Stop
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cp.Sync(ctx); err != nil {
		tb.Fatal(err)
	}
	cp.Serve()
	if err := cp.WaitReady(ctx); err != nil {
		tb.Fatal(err)
	}
	return cp
}
