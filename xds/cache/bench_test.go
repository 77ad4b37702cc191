package cache

import (
	"fmt"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
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
