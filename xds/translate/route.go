package translate

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	rmqv3 "github.com/envoyproxy/go-control-plane/contrib/envoy/extensions/filters/network/rocketmq_proxy/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/rocketpilot/rocketpilot/routing"
)

// Request codes routes match on, through the `code` pseudo-header Envoy's filter sets to the decimal request
// code. SendCodes, ConsumeCodes and AckCodes are codes Envoy's filter routes (EnvoyDispatchedCodes; it answers
// every other code itself, before any routing). An entry for a code Envoy never routes stays only where another
// client of rocketpilot routes that code, and docs/xds.md lists each of them with that client
// (TestDocsListTheCodesEnvoysFilterDispatches fails until it does): today PullCodes, whose pop routes the Go
// sidecar (`rocketpilot sidecar`) reads to turn a Pop-mode group's pulls into pops.
var (
	// SendCodes go to the writable masters: SEND_MESSAGE, SEND_MESSAGE_V2.
	SendCodes = []int32{10, 310}
	// ConsumeCodes go to the readable brokers: Envoy's PopMessage.
	ConsumeCodes = []int32{50}
	// AckCodes go back to the broker that popped: Envoy's AckMessage.
	AckCodes = []int32{51}
	// PullCodes are matched by the pop routes of a topic under a TopicRoute's pop rule: PULL_MESSAGE. Envoy's
	// filter never dispatches it (it answers "Request not supported"); the Go sidecar reads these routes.
	PullCodes = []int32{11}
)

// Pseudo-headers set by Envoy's RocketMQ filter.
const (
	HeaderCode       = "code"
	HeaderBrokerName = "broker_name"
	HeaderBrokerID   = "broker_id"
)

// HeaderConsumerGroup is the header a pop route matches the consumer group on: the pulling request's
// consumerGroup, as the Go sidecar presents it (Envoy's filter sets no such header and routes no pull).
const HeaderConsumerGroup = "consumer_group"

// The metadata of a pop route's metadata_match that says how to pop. Envoy's RocketMQ filter reads only the
// envoy.lb namespace of a route's metadata_match (RouteEntryImpl's constructor in contrib/rocketmq_proxy/filters/
// network/source/router/route_matcher.cc) and ignores this one.
const (
	PopNamespace       = "rocketpilot.io/pop"
	KeyInvisibleTimeMs = "invisible_time_ms" // number: the pop's invisible time in milliseconds
	KeyOrdered         = "ordered"           // bool, set only when true: pop orderly (an ordered topic)
)

// PopMode is how a Pop-mode group pops a topic, as its pop route says.
type PopMode struct {
	InvisibleTime time.Duration
	// Ordered: the topic is ordered (its TopicRoute's ordered flag, or an order configuration at the NameServers),
	// so the group pops orderly.
	Ordered bool
}

// TopicRoute is a topic's route table, named by the topic. First match wins:
//  0. under a pop rule, pull codes with a consumer_group header naming a Pop-mode group → the readable subset,
//     with the pop's invisible time (and, for an ordered topic, ordered) in the PopNamespace metadata: one route per group, sorted by name (Envoy
//     never routes a pull; the Go sidecar reads them, see PopGroups),
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
	var routes []*rmqv3.Route
	if pop := topic.Pop; pop != nil {
		ms := float64(pop.InvisibleTime.Milliseconds())
		ordered := pop.Ordered || topic.OrderTopicConf != ""
		groups := slices.Sorted(slices.Values(pop.ConsumerGroups)) // sorted already; the route order must not depend on it
		for _, g := range slices.Compact(groups) {
			action := subset(SubsetReadable, yes)
			how := map[string]*structpb.Value{KeyInvisibleTimeMs: structpb.NewNumberValue(ms)}
			if ordered {
				how[KeyOrdered] = yes
			}
			action.MetadataMatch.FilterMetadata[PopNamespace] = &structpb.Struct{Fields: how}
			routes = append(routes, &rmqv3.Route{
				Match: match(codeHeader(PullCodes, false), exactHeader(HeaderConsumerGroup, g)),
				Route: action,
			})
		}
	}
	routes = append(routes,
		&rmqv3.Route{Match: match(codeHeader(SendCodes, false)), Route: send},
		&rmqv3.Route{Match: match(codeHeader(ConsumeCodes, false)), Route: subset(SubsetReadable, yes)},
	)
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

// PopGroups returns the consumer groups a topic's route table puts in Pop mode (its pop routes: the pull codes and
// an exact consumer_group header, with a positive invisible time in the PopNamespace metadata), each with its
// invisible time and whether it pops orderly; nil when there are none. A group named twice keeps its first
// route's, as first match wins.
func PopGroups(rc *rmqv3.RouteConfiguration) map[string]PopMode {
	pull := codeHeader(PullCodes, false)
	var out map[string]PopMode
	for _, r := range rc.GetRoutes() {
		h := r.GetMatch().GetHeaders()
		if len(h) != 2 || !proto.Equal(h[0], pull) || h[1].GetName() != HeaderConsumerGroup || h[1].GetInvertMatch() {
			continue
		}
		group := h[1].GetStringMatch().GetExact()
		how := r.GetRoute().GetMetadataMatch().GetFilterMetadata()[PopNamespace].GetFields()
		v, ok := how[KeyInvisibleTimeMs].GetKind().(*structpb.Value_NumberValue)
		if group == "" || !ok || !(v.NumberValue >= 1) || v.NumberValue > float64(math.MaxInt64/int64(time.Millisecond)) {
			continue
		}
		if _, dup := out[group]; dup {
			continue
		}
		if out == nil {
			out = map[string]PopMode{}
		}
		out[group] = PopMode{InvisibleTime: time.Duration(v.NumberValue) * time.Millisecond, Ordered: how[KeyOrdered].GetBoolValue()}
	}
	return out
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
