package interop

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rocketpilot/rocketpilot/controlplane"
	"github.com/rocketpilot/rocketpilot/controlplane/controlplanetest"
	"github.com/rocketpilot/rocketpilot/dataplane"
	"github.com/rocketpilot/rocketpilot/nameserver/watcher"
	"github.com/rocketpilot/rocketpilot/xds/server"
	"github.com/rocketpilot/rocketpilot/xds/sidecar"
)

// startSidecar runs a control plane watching the cluster's NameServer and a Go sidecar (dataplane) following it
// over xDS; it returns the sidecar's NameServer address, the only address the applications are given.
func startSidecar(t testing.TB, c *simCluster) string {
	t.Helper()
	p, _ := startSidecarOf(t, startControlPlaneFor(t, c, nil))
	return p.Addr()
}

// startControlPlaneFor runs a control plane watching the cluster's NameServer and, with policies (file name →
// YAML), a config directory holding them; it returns its xDS address.
func startControlPlaneFor(t testing.TB, c *simCluster, policies map[string]string) string {
	t.Helper()
	sources := controlplane.SourcesConfig{NameServers: []string{c.ns.Addr()},
		Watch: watcher.Options{RateLimit: 1e6, Interval: 100 * time.Millisecond, BrokerInterval: 50 * time.Millisecond}}
	if len(policies) > 0 {
		sources.ConfigDir, sources.ConfigPoll = t.TempDir(), 50*time.Millisecond
		for name, body := range policies {
			if err := os.WriteFile(filepath.Join(sources.ConfigDir, name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	cp := controlplanetest.Start(t, controlplane.Config{Stack: server.StackConfig{Grace: time.Second}, Sources: sources})
	return cp.Addr()
}

// startSidecarOf runs a Go sidecar following the control plane at xdsAddr; it returns the proxy and its xDS
// client.
func startSidecarOf(t testing.TB, xdsAddr string) (*dataplane.Proxy, *sidecar.Client) {
	t.Helper()
	xc, err := sidecar.Dial(xdsAddr, sidecar.Options{NodeID: uniqueName("interop-sidecar")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { xc.Close() })
	p := dataplane.New(dataplane.Options{Listen: "127.0.0.1:0", Routes: xc})
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p, xc
}

// TestGoClientThroughSidecar is the Go client's acceptance through a sidecar: the producer (sync, async, one-way,
// batch, ordered) and the push consumers (clustering, orderly, restarted), given only the sidecar's address as their
// NameServer, move 10,000 messages through it to the simulated brokers and back, checked by id, body, queue and
// offset, the ordered ones in order.
func TestGoClientThroughSidecar(t *testing.T) {
	c := startSimCluster(t)
	goClientAcceptance(t, c, startSidecar(t, c))
}
