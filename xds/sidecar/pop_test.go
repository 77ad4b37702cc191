package sidecar_test

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rocketpilot/rocketpilot/controlplane"
	"github.com/rocketpilot/rocketpilot/controlplane/controlplanetest"
	"github.com/rocketpilot/rocketpilot/internal/embeddedtest"
	"github.com/rocketpilot/rocketpilot/internal/testutil"
	"github.com/rocketpilot/rocketpilot/nameserver/embedded"
	"github.com/rocketpilot/rocketpilot/nameserver/watcher"
	"github.com/rocketpilot/rocketpilot/xds/server"
	"github.com/rocketpilot/rocketpilot/xds/sidecar"
	"github.com/rocketpilot/rocketpilot/xds/translate"
)

// TestRouteShowsPopMode: a TopicRoute's pop rule, from a control plane's config directory through its xDS stream,
// shows in Route().Pop as each Pop-mode group with its invisible time; the topic keeps its cluster. Removing the
// rule empties Pop on the open stream.
func TestRouteShowsPopMode(t *testing.T) {
	ns := embeddedtest.StartDemo(t)
	dir := t.TempDir()
	write := func(doc string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, "pop.yaml"), []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(`apiVersion: rocketpilot.io/v1alpha1
kind: TopicRoute
metadata: {name: orders-pop}
spec:
  topics: {exact: [TopicTest]}
  pop:
    consumerGroups: [orders-cg]
    invisibleTime: 8s
`)
	cp := controlplanetest.Start(t, controlplane.Config{
		Stack: server.StackConfig{Grace: time.Second},
		Sources: controlplane.SourcesConfig{NameServers: []string{ns.Addr()}, ConfigDir: dir, ConfigPoll: 50 * time.Millisecond,
			Watch: watcher.Options{RateLimit: 1e6, Interval: 100 * time.Millisecond}},
	})
	sc, err := sidecar.Dial(cp.Addr(), sidecar.Options{NodeID: "pop-node"})
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	route := func() *sidecar.Route {
		t.Helper()
		r, err := sc.Route(ctx, embedded.DemoTopic)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	want := map[string]translate.PopMode{"orders-cg": {InvisibleTime: 8 * time.Second}}
	first := route()
	if !maps.Equal(first.Pop, want) {
		t.Fatalf("Route().Pop = %v, want %v", first.Pop, want)
	}
	write(`apiVersion: rocketpilot.io/v1alpha1
kind: TopicRoute
metadata: {name: orders-pop}
spec:
  topics: {exact: [TopicTest]}
`)
	testutil.EventuallyTrue(t, 10*time.Second, "Pop empty once the rule is gone", func() bool { return route().Pop == nil })
	if r := route(); r.Cluster != first.Cluster {
		t.Fatalf("the pop rule moved the topic to cluster %s from %s: it is route-level only", r.Cluster, first.Cluster)
	}
	if _, nacks := sc.Stats(); nacks != 0 {
		t.Fatalf("the client rejected %d responses", nacks)
	}
}
