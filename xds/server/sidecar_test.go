package server

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/rocketpilot/rocketpilot/nameserver/embedded"
	"github.com/rocketpilot/rocketpilot/remoting"
	"github.com/rocketpilot/rocketpilot/routing"
	"github.com/rocketpilot/rocketpilot/xds/sidecar"
)

// TestSidecarWatchAndReconnect: the Go sidecar client's watch fires on changes, and after the server restarts it
// resubscribes by itself and keeps following.
func TestSidecarWatchAndReconnect(t *testing.T) {
	s := startStack(t, embedded.LoadDemo)
	// A second server over the same cache, on an address the test restarts.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	serve := func(lis net.Listener) (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			serveGRPC(ctx, newGRPC(ctx, s.cache, s.cache, Options{}), lis, 100*time.Millisecond)
			close(done)
		}()
		return func() { cancel(); <-done }
	}
	stop := serve(lis)
	sc, err := sidecar.Dial(addr, sidecar.Options{NodeID: "watcher-node", MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	updates := make(chan *remoting.TopicRouteData, 16)
	cancelWatch := sc.Watch("TopicTest", func(r *remoting.TopicRouteData, err error) {
		if err == nil {
			updates <- r
		}
	})
	defer cancelWatch()
	first := waitRoute(t, updates)
	if len(first.QueueDatas) != 2 {
		t.Fatalf("first route: %+v", first)
	}

	stop() // the control plane goes away...
	lis2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	stop = serve(lis2) // ...and comes back on the same address
	defer stop()
	deadline := time.Now().Add(5 * time.Second)
	for streams, _ := sc.Stats(); streams < 2; streams, _ = sc.Stats() {
		if time.Now().After(deadline) {
			t.Fatal("the client did not reconnect")
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.ns.SetPerm("TopicTest", "broker-b", 4)
	for {
		r := waitRoute(t, updates)
		if r.QueueDatas[1].Perm == 4 {
			break
		}
	}
	if _, nacks := sc.Stats(); nacks != 0 {
		t.Fatalf("the client rejected %d responses", nacks)
	}
}

func waitRoute(t *testing.T, ch chan *remoting.TopicRouteData) *remoting.TopicRouteData {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("no route update")
		return nil
	}
}

// TestSidecarForget: forgetting a topic unsubscribes it on the server, and the cluster only it used.
func TestSidecarForget(t *testing.T) {
	s := startStack(t, embedded.LoadDemo)
	sc, err := sidecar.Dial(s.addr, sidecar.Options{NodeID: "forgetful"})
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, topic := range []string{"TopicTest", "demo-orders-001"} {
		if _, err := sc.Resolve(ctx, topic); err != nil {
			t.Fatal(err)
		}
	}
	subscribed := func(typeURL string) []string {
		for _, st := range s.cache.Streams() {
			if st.Node == "forgetful" {
				for _, ts := range st.Types {
					if ts.TypeURL == typeURL {
						return ts.Subscribed
					}
				}
			}
		}
		return nil
	}
	sc.Forget("demo-orders-001")
	waitFor(t, "the route unsubscribed", func() bool {
		got := subscribed("type.googleapis.com/envoy.extensions.filters.network.rocketmq_proxy.v3.RouteConfiguration")
		return len(got) == 1 && got[0] == "TopicTest"
	})
	// The two topics route to different clusters in the demo: only TopicTest's stays subscribed.
	if s.table.Topic("demo-orders-001").BrokerSet == s.table.Topic("TopicTest").BrokerSet {
		t.Fatal("the demo topics share a broker set: the test needs two")
	}
	waitFor(t, "only TopicTest's cluster kept", func() bool {
		return len(subscribed("type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment")) == 1
	})
	if s.table.Interest().Wanted("demo-orders-001") {
		t.Fatal("the forgotten topic is still wanted from the sources")
	}
}

// TestSidecarRouteShowsPolicy: a weighted TopicRoute policy over two broker clusters shows in the route a Go
// sidecar reads — the send targets carry the weights — and its removal restores the NameServer's route.
func TestSidecarRouteShowsPolicy(t *testing.T) {
	s := startStack(t, embedded.LoadDemo)
	sc, err := sidecar.Dial(s.addr, sidecar.Options{NodeID: "policy-node"})
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	const topic = "demo-inventory-003" // broker-a (DefaultCluster) and broker-d (ClusterB)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	before, err := sc.Route(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	if len(before.Send) != 2 || before.Send[0].Weight != 0 {
		t.Fatalf("unweighted route: %+v", before.Send)
	}
	s.table.SetPolicies([]routing.Policy{{Name: "ns/migrate", Match: routing.TopicMatch{Exact: []string{topic}}, Send: []routing.Backend{
		{BrokerCluster: embedded.DemoCluster, Weight: 80, Weighted: true}, {BrokerCluster: embedded.DemoClusterB, Weight: 20, Weighted: true}}}})
	var weights map[string]uint32
	waitFor(t, "the weighted route", func() bool {
		r, err := sc.Route(ctx, topic)
		if err != nil || r.Cluster == before.Cluster || r.SendCluster != r.Cluster+"-send" {
			return false
		}
		weights = map[string]uint32{}
		for _, tg := range r.Send {
			weights[tg.BrokerName] = tg.Weight
		}
		return true
	})
	if weights["broker-a"] != 4*weights["broker-d"] || weights["broker-d"] == 0 {
		t.Fatalf("send weights %v, want DefaultCluster 80 : ClusterB 20", weights)
	}
	s.table.SetPolicies(nil)
	waitFor(t, "the NameServer's route back", func() bool {
		r, err := sc.Route(ctx, topic)
		return err == nil && r.Cluster == before.Cluster
	})
}
