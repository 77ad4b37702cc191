package translate

import (
	"math/rand/v2"
	"slices"
	"testing"

	rmqv3 "github.com/envoyproxy/go-control-plane/contrib/envoy/extensions/filters/network/rocketmq_proxy/v3"
)

// TestClientsFindClustersByMatchNotPlace: a topic's default cluster (the catch-all route Envoy answers a route
// query from) and its send target are found by what their routes match, whatever the routes' order, for a plain
// and a weighted topic; a table without such routes has neither.
func TestClientsFindClustersByMatchNotPlace(t *testing.T) {
	_, topics := model(t)
	plain := topics[0]
	weighted := *plain
	set := *plain.BrokerSet
	set.Members = slices.Clone(set.Members)
	for i := range set.Members {
		set.Members[i].Weight = int32(10 * (i + 1))
	}
	weighted.BrokerSet = &set
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		name        string
		rc          *rmqv3.RouteConfiguration
		def, target string
	}{
		{"plain", TopicRoute(plain), ClusterName(plain.BrokerSet), ClusterName(plain.BrokerSet)},
		{"weighted", TopicRoute(&weighted), ClusterName(&set), SendClusterName(&set)},
	} {
		for round := range 10 {
			rc := &rmqv3.RouteConfiguration{Name: tc.rc.Name, Routes: slices.Clone(tc.rc.Routes)}
			if round > 0 {
				rng.Shuffle(len(rc.Routes), func(i, j int) { rc.Routes[i], rc.Routes[j] = rc.Routes[j], rc.Routes[i] })
			}
			if got := DefaultCluster(rc); got != tc.def {
				t.Errorf("%s, round %d: DefaultCluster = %q, want %q", tc.name, round, got, tc.def)
			}
			if got := SendTarget(rc); got != tc.target {
				t.Errorf("%s, round %d: SendTarget = %q, want %q", tc.name, round, got, tc.target)
			}
		}
	}
	if DefaultCluster(&rmqv3.RouteConfiguration{}) != "" || SendTarget(&rmqv3.RouteConfiguration{}) != "" {
		t.Error("an empty route table has a default cluster or a send target")
	}
}
