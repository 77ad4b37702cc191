package translate

import (
	"slices"
	"strconv"
	"strings"

	rmqv3 "github.com/envoyproxy/go-control-plane/contrib/envoy/extensions/filters/network/rocketmq_proxy/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/rocketpilot/rocketpilot/routing"
)

// Request codes routes match on, through the `code` pseudo-header Envoy's filter sets to the decimal request
// code. They are the codes Envoy's filter routes (EnvoyDispatchedCodes; it answers every other code itself, before
// any routing) and no others: an entry for a code Envoy never routes stays only where another client of
// rocketpilot routes that code, and none does today. Issue 18's Go sidecar (`rocketpilot sidecar`) will add back
// the codes it routes (pull 11, batch send 320, Apache RocketMQ 5's Pop family 2000xx, ...); docs/xds.md must then
// list each of them, with that sidecar as its user (TestDocsListTheCodesEnvoysFilterDispatches fails until it does).
var (
	// SendCodes go to the writable masters: SEND_MESSAGE, SEND_MESSAGE_V2.
	SendCodes = []int32{10, 310}
	// ConsumeCodes go to the readable brokers: Envoy's PopMessage.
	ConsumeCodes = []int32{50}
	// AckCodes go back to the broker that popped: Envoy's AckMessage.
	AckCodes = []int32{51}
)

// Pseudo-headers set by Envoy's RocketMQ filter.
const (
	HeaderCode       = "code"
	HeaderBrokerName = "broker_name"
	HeaderBrokerID   = "broker_id"
)

// TopicRoute is a topic's route table, named by the topic. First match wins:
//  1. send codes → the writable subset, or under a weighted TopicRoute the send cluster (SendCluster),
//  2. consume codes → the readable subset,
//  3. ack codes with broker_name and broker_id headers → that broker: one route per readable group, to the broker
//     that carries its queues (the only one the readable subset can have popped from),
//  4. anything but an ack (route queries included) → the whole cluster.
//
// An ack for a broker no route of 3 names matches nothing, and Envoy's filter fails a request without a route
// ("No route for current request"), so it cannot reach a broker that did not pop it.
func TopicRoute(topic *routing.Topic) *rmqv3.RouteConfiguration {
	return &rmqv3.RouteConfiguration{Name: topic.Name, Routes: Routes(topic)}
}

// Routes returns the routes of one topic, for a route table that holds several topics.
func Routes(topic *routing.Topic) []*rmqv3.Route {
	cluster := ClusterName(topic.BrokerSet)
	match := func(headers ...*routev3.HeaderMatcher) *rmqv3.RouteMatch {
		return &rmqv3.RouteMatch{
			Topic:   &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: topic.Name}},
			Headers: headers,
		}
	}
	subset := func(key string, v *structpb.Value) *rmqv3.RouteAction {
		return &rmqv3.RouteAction{Cluster: cluster, MetadataMatch: &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
			LBNamespace: {Fields: map[string]*structpb.Value{key: v}},
		}}}
	}
	yes := structpb.NewBoolValue(true)
	send := subset(SubsetWritable, yes)
	if Weighted(topic.BrokerSet) {
		send = &rmqv3.RouteAction{Cluster: SendClusterName(topic.BrokerSet)} // weighted writable masters only
	}
	routes := []*rmqv3.Route{
		{Match: match(codeHeader(SendCodes, false)), Route: send},
		{Match: match(codeHeader(ConsumeCodes, false)), Route: subset(SubsetReadable, yes)},
	}
	// Pops go to the readable subset, which holds one broker per readable group (its carrier), so acks can only
	// come back for those brokers: one ack route each. A group a policy took out of consume keeps its ack route
	// while its queues are readable at the source, for the messages popped from it before. The carrier is the only endpoint of its group with subset
	// keys, so its broker name alone selects it; the broker_id header still has to be the carrier's, so an ack
	// of a pop made before the group's carrier changed fails here rather than at a broker that never saw it.
	for i := range topic.BrokerSet.Members {
		m := &topic.BrokerSet.Members[i]
		id := carrier(m)
		if id < 0 || !m.AcksReadable() {
			continue
		}
		routes = append(routes, &rmqv3.Route{
			Match: match(codeHeader(AckCodes, false), exactHeader(HeaderBrokerName, m.BrokerName),
				exactHeader(HeaderBrokerID, strconv.FormatInt(id, 10))),
			Route: subset(SubsetBrokerName, structpb.NewStringValue(m.BrokerName)),
		})
	}
	return append(routes, &rmqv3.Route{Match: match(codeHeader(AckCodes, true)), Route: &rmqv3.RouteAction{Cluster: cluster}})
}

// DefaultCluster returns the cluster of a topic's catch-all route (rule 4 of TopicRoute: every code but the acks),
// the one Envoy's filter answers a route query (105) from; "" when the table has none. Clients find it by its
// match, not by its place in the table.
func DefaultCluster(rc *rmqv3.RouteConfiguration) string {
	return clusterOf(rc, AckCodes, true)
}

// SendTarget returns the cluster a topic's sends go to (rule 1 of TopicRoute): the topic's cluster, or under a
// weighted TopicRoute its send cluster; "" when the table has no send route.
func SendTarget(rc *rmqv3.RouteConfiguration) string {
	return clusterOf(rc, SendCodes, false)
}

// clusterOf returns the cluster of the first route whose only header matcher is the code matcher codeHeader(codes,
// invert) builds.
func clusterOf(rc *rmqv3.RouteConfiguration, codes []int32, invert bool) string {
	want := codeHeader(codes, invert)
	for _, r := range rc.GetRoutes() {
		if h := r.GetMatch().GetHeaders(); len(h) == 1 && proto.Equal(h[0], want) {
			return r.GetRoute().GetCluster()
		}
	}
	return ""
}

// codeHeader matches the code pseudo-header against a set of codes with one anchored RE2 alternation (Envoy's
// safe_regex matches the whole value); invert matches every other code.
func codeHeader(codes []int32, invert bool) *routev3.HeaderMatcher {
	alts := make([]string, len(codes))
	for i, c := range codes {
		alts[i] = strconv.Itoa(int(c))
	}
	return &routev3.HeaderMatcher{
		Name:        HeaderCode,
		InvertMatch: invert,
		HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
			MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: strings.Join(alts, "|")}},
		}},
	}
}

func exactHeader(name, value string) *routev3.HeaderMatcher {
	return &routev3.HeaderMatcher{
		Name: name,
		HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
			MatchPattern: &matcherv3.StringMatcher_Exact{Exact: value},
		}},
	}
}

func sortStrings(s []string) { slices.Sort(s) }
