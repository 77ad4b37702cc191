package cache

import (
	"fmt"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	gcpstream "github.com/envoyproxy/go-control-plane/pkg/server/stream/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rocketpilot/rocketpilot/routing"
	"github.com/rocketpilot/rocketpilot/xds/translate"
)

// BenchmarkCollect is one Prometheus scrape of the cache's series with 10,000 open streams, each subscribed to two
// of 20,000 routes: the gauges walk the streams and the routes in use under the cache's lock.
func BenchmarkCollect(b *testing.B) {
	tab := routing.NewTable()
	const topics, streams = 20000, 10000
	for i := range topics {
		tab.Apply("ns", routing.Update{Topic: fmt.Sprintf("t%05d", i), Route: &routing.Route{Members: []routing.Member{{Cluster: "C",
			BrokerName: fmt.Sprintf("b%d", i%8), Perm: 6, ReadQueueNums: 4, WriteQueueNums: 4,
			Addrs: []routing.BrokerAddr{{ID: 0, Addr: "10.0.0.1:10911"}}}}}})
	}
	c, err := New(tab, Options{})
	if err != nil {
		b.Fatal(err)
	}
	for i := range streams {
		open(b, c, int64(i+1), &corev3.Node{Id: fmt.Sprintf("n%d", i)}, translate.RouteType,
			fmt.Sprintf("t%05d", (2*i)%topics), fmt.Sprintf("t%05d", (2*i+1)%topics))
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	b.ResetTimer()
	for b.Loop() {
		if _, err := reg.Gather(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkScopeRebuild is one topic's change in the scope of an Envoy node that routes n topics: the cache rebuilds
// the node's ECDS config (every route of the scope) while it holds its lock, so every xDS request waits that long.
func BenchmarkScopeRebuild(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("topics=%d", n), func(b *testing.B) {
			tab := routing.NewTable()
			topics := make([]string, n)
			member := func(perm int32, i int) routing.Member {
				return routing.Member{Cluster: "C", BrokerName: fmt.Sprintf("b%d", i%8), Perm: perm, ReadQueueNums: 4, WriteQueueNums: 4,
					Addrs: []routing.BrokerAddr{{ID: 0, Addr: "10.0.0.1:10911"}, {ID: 1, Addr: "10.0.0.2:10911"}}}
			}
			for i := range n {
				topics[i] = fmt.Sprintf("t%05d", i)
				tab.Apply("ns", routing.Update{Topic: topics[i], Route: &routing.Route{Members: []routing.Member{member(6, i), member(6, i+1)}}})
			}
			c, err := New(tab, Options{})
			if err != nil {
				b.Fatal(err)
			}
			sub := tab.Subscribe()
			open(b, c, 1, scoped("envoy", topics...), translate.ExtensionType, translate.ExtensionConfigName)
			perm := int32(6)
			b.ResetTimer()
			for b.Loop() {
				perm ^= 2 // read-write, read-only, read-write...
				tab.Apply("ns", routing.Update{Topic: topics[0], Route: &routing.Route{Members: []routing.Member{member(perm, 0), member(6, 1)}}})
				cs, _, _ := sub.TryNext()
				c.Apply(cs)
			}
		})
	}
}

// BenchmarkOnDemandRequest is one delta request of a Go sidecar's stream that subscribes to a topic no stream uses
// and drops the previous one, as go-control-plane's server makes it (request callback, then the watch): the cost
// of an on-demand resolve under the cache's lock, the route's translation included.
func BenchmarkOnDemandRequest(b *testing.B) {
	tab := routing.NewTable()
	const topics = 100_000
	for i := range topics {
		tab.Apply("ns", routing.Update{Topic: fmt.Sprintf("t%06d", i), Route: &routing.Route{Members: []routing.Member{{Cluster: "C",
			BrokerName: fmt.Sprintf("b%d", i%8), Perm: 6, ReadQueueNums: 4, WriteQueueNums: 4,
			Addrs: []routing.BrokerAddr{{ID: 0, Addr: "10.0.0.1:10911"}, {ID: 1, Addr: "10.0.0.2:10911"}}}}}})
	}
	c, err := New(tab, Options{})
	if err != nil {
		b.Fatal(err)
	}
	ch := open(b, c, 1, &corev3.Node{Id: "sidecar"}, translate.RouteType, "t000000")
	<-ch
	sub := gcpstream.NewDeltaSubscription([]string{"t000000"}, nil, nil, true)
	i := 0
	b.ResetTimer()
	for b.Loop() {
		prev, next := fmt.Sprintf("t%06d", i%topics), fmt.Sprintf("t%06d", (i+1)%topics)
		i++
		req := &discovery.DeltaDiscoveryRequest{TypeUrl: translate.RouteType, ResourceNamesSubscribe: []string{next},
			ResourceNamesUnsubscribe: []string{prev}}
		if err := c.OnStreamDeltaRequest(1, req); err != nil {
			b.Fatal(err)
		}
		sub.UpdateResourceSubscriptions(req.ResourceNamesSubscribe, req.ResourceNamesUnsubscribe)
		if _, err := c.CreateDeltaWatch(req, sub, ch); err != nil {
			b.Fatal(err)
		}
		resp := <-ch
		sub.SetReturnedResources(resp.GetNextVersionMap())
	}
}

// BenchmarkNewScopedNode is a new Envoy node scoped to 3,000 of 100,000 topics: the cache materialises and
// translates their routes and builds the node's ECDS config, holding its lock. With a writer changing other topics
// meanwhile, each read of the table can wait for a pending write (Go's RWMutex lets no reader in while a writer
// waits): the cache reads every topic it materialises in one hold of the table's lock, so it waits once.
func BenchmarkNewScopedNode(b *testing.B) {
	for _, writer := range []bool{false, true} {
		b.Run(fmt.Sprintf("writer=%v", writer), func(b *testing.B) {
			tab := routing.NewTable()
			const topics, scope = 100_000, 3_000
			names := make([]string, topics)
			route := func(i int) *routing.Route {
				return &routing.Route{Members: []routing.Member{{Cluster: "C", BrokerName: fmt.Sprintf("b%d", i%8), Perm: 6,
					ReadQueueNums: 4, WriteQueueNums: 4, Addrs: []routing.BrokerAddr{{ID: 0, Addr: "10.0.0.1:10911"}}}}}
			}
			for i := range topics {
				names[i] = fmt.Sprintf("t%06d", i)
				tab.Apply("ns", routing.Update{Topic: names[i], Route: route(i)})
			}
			c, err := New(tab, Options{})
			if err != nil {
				b.Fatal(err)
			}
			stop := make(chan struct{})
			done := make(chan struct{})
			go func() {
				defer close(done)
				for i := 0; writer; i++ {
					select {
					case <-stop:
						return
					default:
					}
					tab.Apply("ns", routing.Update{Topic: names[scope+i%(topics-scope)], Route: route(i + 1)})
				}
			}()
			id := int64(0)
			b.ResetTimer()
			for b.Loop() {
				id++
				open(b, c, id, scoped(fmt.Sprint("n", id), names[:scope]...), translate.ExtensionType, translate.ExtensionConfigName)
				c.OnDeltaStreamClosed(id, nil)
			}
			b.StopTimer()
			close(stop)
			<-done
		})
	}
}
