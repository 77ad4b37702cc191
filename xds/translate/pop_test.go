package translate

import (
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	rmqv3 "github.com/envoyproxy/go-control-plane/contrib/envoy/extensions/filters/network/rocketmq_proxy/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/rocketpilot/rocketpilot/routing"
)

// popTopic is TopicTest of the fixed model under a pop rule for the groups given (in that order).
func popTopic(t *testing.T, invisible time.Duration, groups ...string) *routing.Topic {
	t.Helper()
	_, topics := model(t)
	tp := *topics[0]
	tp.Pop = &routing.PopPolicy{ConsumerGroups: groups, InvisibleTime: invisible}
	return &tp
}

// TestPopRoutes: a topic under a pop rule gets, before its other routes, one pop route per group, sorted by group
// whatever the order given: PULL_MESSAGE and the group's consumer_group header, to the topic's cluster's readable
// subset, with the invisible time in milliseconds in the PopNamespace metadata. The routes that follow are the
// topic's routes without the rule, and PopGroups reads the groups back, whatever the routes' order.
func TestPopRoutes(t *testing.T) {
	plain := popTopic(t, 0)
	plain.Pop = nil
	tp := popTopic(t, 8*time.Second, "orders-b", "orders-a")
	routes := Routes(tp)
	without := Routes(plain)
	if len(routes) != len(without)+2 {
		t.Fatalf("%d routes under a pop rule of two groups, %d without", len(routes), len(without))
	}
	for i, r := range routes[2:] {
		if !proto.Equal(r, without[i]) {
			t.Fatalf("route %d after the pop routes differs from the route without the rule:\n%v\n%v", i+2, r, without[i])
		}
	}
	for i, group := range []string{"orders-a", "orders-b"} {
		r := routes[i]
		h := r.GetMatch().GetHeaders()
		if r.GetMatch().GetTopic().GetExact() != tp.Name || len(h) != 2 || !proto.Equal(h[0], codeHeader(PullCodes, false)) ||
			!proto.Equal(h[1], exactHeader(HeaderConsumerGroup, group)) {
			t.Fatalf("pop route %d matches %v, want topic %s, code 11 and consumer_group %s", i, r.GetMatch(), tp.Name, group)
		}
		md := r.GetRoute().GetMetadataMatch().GetFilterMetadata()
		if r.GetRoute().GetCluster() != ClusterName(tp.BrokerSet) || len(md) != 2 ||
			!md[LBNamespace].GetFields()[SubsetReadable].GetBoolValue() || len(md[LBNamespace].GetFields()) != 1 ||
			md[PopNamespace].GetFields()[KeyInvisibleTimeMs].GetNumberValue() != 8000 || len(md[PopNamespace].GetFields()) != 1 {
			t.Fatalf("pop route %d: %v", i, r.GetRoute())
		}
	}
	want := map[string]PopMode{"orders-a": {InvisibleTime: 8 * time.Second}, "orders-b": {InvisibleTime: 8 * time.Second}}
	rng := rand.New(rand.NewPCG(3, 4))
	for round := range 10 {
		rc := &rmqv3.RouteConfiguration{Name: tp.Name, Routes: slices.Clone(routes)}
		if round > 0 {
			rng.Shuffle(len(rc.Routes), func(i, j int) { rc.Routes[i], rc.Routes[j] = rc.Routes[j], rc.Routes[i] })
		}
		if got := PopGroups(rc); !maps.Equal(got, want) {
			t.Fatalf("round %d: PopGroups = %v, want %v", round, got, want)
		}
		if DefaultCluster(rc) != ClusterName(tp.BrokerSet) || SendTarget(rc) != ClusterName(tp.BrokerSet) {
			t.Fatalf("round %d: the pop routes hide the catch-all or the send route", round)
		}
	}
	if got := PopGroups(TopicRoute(plain)); got != nil {
		t.Fatalf("PopGroups without a rule = %v, want nil", got)
	}
	// An ordered topic, by its policy or by its order configuration at the NameServers, pops orderly.
	byPolicy := popTopic(t, 8*time.Second, "orders-a")
	byPolicy.Pop.Ordered = true
	byConf := popTopic(t, 8*time.Second, "orders-a")
	byConf.OrderTopicConf = "broker-a:4"
	for _, tp := range []*routing.Topic{byPolicy, byConf} {
		r := Routes(tp)[0]
		if !r.GetRoute().GetMetadataMatch().GetFilterMetadata()[PopNamespace].GetFields()[KeyOrdered].GetBoolValue() {
			t.Fatalf("pop route of an ordered topic: %v", r.GetRoute())
		}
		if got := PopGroups(TopicRoute(tp)); !maps.Equal(got, map[string]PopMode{"orders-a": {InvisibleTime: 8 * time.Second, Ordered: true}}) {
			t.Fatalf("PopGroups of an ordered topic = %v", got)
		}
	}
	// The routes are the same bytes however the groups were given.
	if again := Routes(popTopic(t, 8*time.Second, "orders-a", "orders-b")); !slices.EqualFunc(again, routes, func(a, b *rmqv3.Route) bool {
		x, _ := proto.MarshalOptions{Deterministic: true}.Marshal(a)
		y, _ := proto.MarshalOptions{Deterministic: true}.Marshal(b)
		return string(x) == string(y)
	}) {
		t.Fatal("the pop routes depend on the order of the groups")
	}
}

// TestPopGroupsSkipsWhatItCannotRead: a route is a pop route only with the pull code, an exact consumer_group and a
// positive invisible time; anything else (another code, a group matched otherwise, no or a bad time) is not read
// as one, and a group named twice keeps its first route's time (first match wins).
func TestPopGroupsSkipsWhatItCannotRead(t *testing.T) {
	tp := popTopic(t, 8*time.Second, "g1", "g2", "g3", "g4", "g5")
	rc := TopicRoute(tp)
	rc.Routes[0].Match.Headers[0] = codeHeader(SendCodes, false)                      // g1: not a pull
	rc.Routes[1].Match.Headers[1] = &routev3.HeaderMatcher{Name: HeaderConsumerGroup, // g2: a prefix, not exact
		HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
			MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "g2"}}}}
	delete(rc.Routes[2].Route.MetadataMatch.FilterMetadata, PopNamespace)                               // g3: no time
	rc.Routes[3].Route.MetadataMatch.FilterMetadata[PopNamespace].Fields[KeyInvisibleTimeMs].Kind = nil // g4: no number
	dup := proto.Clone(rc.Routes[4]).(*rmqv3.Route)                                                     // g5 again, after: ignored
	dup.Route.MetadataMatch.FilterMetadata[PopNamespace].Fields[KeyInvisibleTimeMs] = structpb.NewNumberValue(1000)
	rc.Routes = slices.Insert(rc.Routes, 5, dup)
	if got := PopGroups(rc); !maps.Equal(got, map[string]PopMode{"g5": {InvisibleTime: 8 * time.Second}}) {
		t.Fatalf("PopGroups = %v, want g5 only", got)
	}
}

// TestEnvoyIgnoresPopRoutes: the pop routes change nothing Envoy's filter does. It dispatches no pull (11), and for
// every code it routes or answers, the hosts are those of the same topic without the rule: the pop routes match
// only code 11, and the PopNamespace metadata is outside envoy.lb, the only namespace of a route's metadata_match
// Envoy reads (RouteEntryImpl's constructor, contrib/rocketmq_proxy/filters/network/source/router/route_matcher.cc).
func TestEnvoyIgnoresPopRoutes(t *testing.T) {
	tp := popTopic(t, time.Minute, "orders-a")
	plain := *tp
	plain.Pop = nil
	clusters := clustersOf(tp.BrokerSet)
	if envoyDispatch(PullCodes[0]) != envoyNotSupported {
		t.Fatal("the model of Envoy's filter dispatches a pull")
	}
	for _, req := range []envoyRequest{
		code(10), code(310), code(50), code(105),
		code(51, HeaderBrokerName, "broker-a", HeaderBrokerID, "0"),
		code(10, HeaderConsumerGroup, "orders-a"), code(50, HeaderConsumerGroup, "orders-a"),
	} {
		got, routed := envoyHostsIn(t, Routes(tp), clusters, req)
		want, wantRouted := envoyHostsIn(t, Routes(&plain), clusters, req)
		slices.Sort(got)
		slices.Sort(want)
		if routed != wantRouted || !slices.Equal(got, want) {
			t.Fatalf("%v: hosts %v (routed %v) under the pop rule, %v (routed %v) without", req.headers, got, routed, want, wantRouted)
		}
	}
}
