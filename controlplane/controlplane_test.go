package controlplane_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/rocketpilot/rocketpilot/controllers"
	"github.com/rocketpilot/rocketpilot/controlplane"
	"github.com/rocketpilot/rocketpilot/internal/embeddedtest"
	"github.com/rocketpilot/rocketpilot/internal/leakcheck"
	"github.com/rocketpilot/rocketpilot/internal/testutil"
	"github.com/rocketpilot/rocketpilot/nameserver/watcher"
	"github.com/rocketpilot/rocketpilot/xds/server"
	"github.com/rocketpilot/rocketpilot/xds/translate"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// routeStream opens a delta ADS stream that subscribes to a topic's route: send sends the subscription first,
// then ACKs; recv waits for the next response and returns the names it carried and removed.
func routeStream(t *testing.T, addr, topic string) (send func(), recv func() ([]string, error)) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	node := &core.Node{Id: "sidecar-1"}
	first := true
	send = func() {
		req := &discovery.DeltaDiscoveryRequest{TypeUrl: translate.RouteType}
		if first {
			req.Node, req.ResourceNamesSubscribe, first = node, []string{topic}, false
		}
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	recv = func() ([]string, error) {
		resp, err := stream.Recv()
		if err != nil {
			return nil, err
		}
		var names []string
		for _, r := range resp.Resources {
			names = append(names, r.Name)
		}
		for _, r := range resp.RemovedResources {
			names = append(names, "-"+r)
		}
		return names, nil
	}
	return send, recv
}

// TestAssemblyLife: the command line's NameServers are a source like the others, under the one supervisor; the
// admin API answers from Start but is ready only once xDS is served; a draining control plane fails readiness
// while it still serves streams; Stop closes every listener.
func TestAssemblyLife(t *testing.T) {
	ns := embeddedtest.StartDemo(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "routes.yaml"), []byte(`apiVersion: rocketpilot.io/v1alpha1
kind: TopicRoute
metadata: {name: orders}
spec:
  topics: {exact: [TopicTest]}
  drain: {brokerNames: [broker-b]}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	cp, err := controlplane.New(controlplane.Config{
		Stack: server.StackConfig{Grace: time.Second},
		Sources: controlplane.SourcesConfig{NameServers: []string{ns.Addr()}, ConfigDir: dir, Watch: watcher.Options{RateLimit: 1e6,
			Interval: 100 * time.Millisecond, BrokerInterval: 50 * time.Millisecond, RemoveAfter: time.Nanosecond}},
		Admin: controlplane.AdminConfig{Addr: "127.0.0.1:0", MetricsAddr: "127.0.0.1:0", Version: "v-test"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cp.Start(ctx); err != nil {
		t.Fatal(err)
	}
	admin, metrics := "http://"+cp.AdminAddr(), "http://"+cp.MetricsAddr()
	if code, _ := get(t, admin+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz after Start: %d", code)
	}
	if code, _ := get(t, admin+"/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz before xDS is served: %d, want 503", code)
	}
	if err := cp.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	cp.Serve()
	if err := cp.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if code, _ := get(t, admin+"/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz while serving: %d", code)
	}

	// One status list: the command line's source, synced, under the one supervisor.
	_, body := get(t, admin+"/api/v1/sources")
	var statuses []watcher.Status
	if err := json.Unmarshal([]byte(body), &statuses); err != nil {
		t.Fatalf("/api/v1/sources: %v: %s", err, body)
	}
	if len(statuses) != 1 || statuses[0].Source != "namesrv" || !statuses[0].Synced {
		t.Fatalf("/api/v1/sources %s, want the synced command line's source", body)
	}
	// The config directory's TopicRoute applies; its status is the admin API's resources.
	_, body = get(t, admin+"/api/v1/resources")
	var resources []controllers.FileResourceStatus
	if err := json.Unmarshal([]byte(body), &resources); err != nil {
		t.Fatalf("/api/v1/resources: %v: %s", err, body)
	}
	if len(resources) != 1 || resources[0].Name != "orders" || !resources[0].Accepted {
		t.Fatalf("/api/v1/resources %s, want the accepted TopicRoute", body)
	}
	if p, _ := cp.Table().TopicPolicy("TopicTest"); p == "" {
		t.Fatal("the config directory's TopicRoute was not applied")
	}
	// The metrics endpoint has a listener of its own, with the sources' and the cache's series.
	_, body = get(t, metrics+"/metrics")
	for _, series := range []string{`rocketpilot_nameserver_synced{source="namesrv"} 1`, "rocketpilot_xds_streams"} {
		if !strings.Contains(body, series) {
			t.Errorf("/metrics has no %s", series)
		}
	}
	if code, _ := get(t, admin+"/metrics"); code != http.StatusNotFound {
		t.Errorf("/metrics on the admin address with a metrics listener: %d, want 404", code)
	}

	send, recv := routeStream(t, cp.Addr(), "TopicTest")
	send()
	if names, err := recv(); err != nil || !slices.Equal(names, []string{"TopicTest"}) {
		t.Fatalf("first response %v, %v: want the route of TopicTest", names, err)
	}
	if !cp.Drain() {
		t.Fatal("Drain: not serving")
	}
	if code, _ := get(t, admin+"/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz while draining: %d, want 503", code)
	}
	// Still served: a change reaches the open stream.
	send() // the ACK
	ns.RemoveTopic("TopicTest")
	testutil.EventuallyTrue(t, 10*time.Second, "the topic withdrawn", func() bool { return cp.Table().Topic("TopicTest") == nil })
	if names, err := recv(); err != nil || !slices.Equal(names, []string{"-TopicTest"}) {
		t.Fatalf("a draining control plane stopped serving: %v, %v; want TopicTest removed", names, err)
	}

	cp.Stop()
	for _, addr := range []string{cp.Addr(), cp.AdminAddr(), cp.MetricsAddr()} {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections after Stop", addr)
		}
	}
}

// TestNewFailsOnAPortInUse: a port clash fails New, before anything runs, and leaves no listener open.
func TestNewFailsOnAPortInUse(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	xdsAddr := free.Addr().String()
	free.Close()
	_, err = controlplane.New(controlplane.Config{
		Stack: server.StackConfig{Addr: xdsAddr},
		Admin: controlplane.AdminConfig{Addr: busy.Addr().String()},
	})
	if err == nil || !strings.Contains(err.Error(), "admin listener") {
		t.Fatalf("New with the admin port in use: %v", err)
	}
	l, err := net.Listen("tcp", xdsAddr)
	if err != nil {
		t.Fatalf("the xDS port stayed open after New failed: %v", err)
	}
	l.Close()
}

// TestRunEndsWhenSignalledDuringTheFirstSync: a signal before the first sync ends Run without error, at once.
func TestRunEndsWhenSignalledDuringTheFirstSync(t *testing.T) {
	silent, err := net.Listen("tcp", "127.0.0.1:0") // accepts, never answers: the first sync never ends
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	cp, err := controlplane.New(controlplane.Config{
		Sources:       controlplane.SourcesConfig{NameServers: []string{silent.Addr().String()}},
		ShutdownDelay: time.Hour, // not serving yet: no delay applies
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cp.Run(ctx) }()
	time.Sleep(100 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not end after the signal")
	}
}

// TestRunReturnsAStartFailure: a source that cannot start (an address no NameServer can listen on) is Run's
// error, returned at once, with everything stopped.
func TestRunReturnsAStartFailure(t *testing.T) {
	cp, err := controlplane.New(controlplane.Config{Sources: controlplane.SourcesConfig{NameServers: []string{"127.0.0.1:0"}}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cp.Run(context.Background()) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "port 0") {
			t.Fatalf("Run: %v, want the bad address", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return its start failure")
	}
}
