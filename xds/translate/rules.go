package translate

import (
	"fmt"
	"slices"
	"strings"

	rmqv3 "github.com/envoyproxy/go-control-plane/contrib/envoy/extensions/filters/network/rocketmq_proxy/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// Rule is one route of a topic's route table as a person reads it: which requests it takes, where it sends them.
type Rule struct {
	// Kind is what the route carries: "pop" (a Pop-mode group's pulls), "send", "consume", "ack", "other" (every
	// other code: route queries, heartbeats) or "unknown" for a match TopicRoute never builds.
	Kind string `json:"kind"`
	// Detail narrows it: the consumer group and invisible time of a pop route, the broker of an ack route.
	Detail string `json:"detail,omitempty"`
	// Codes are the request codes matched, as the match writes them ("10|310"); Inverted when it matches every
	// other code.
	Codes    string `json:"codes"`
	Inverted bool   `json:"inverted,omitempty"`
	// Headers are the route's other header matches, as NAME=VALUE, in the route's order.
	Headers []string `json:"headers,omitempty"`
	Cluster string   `json:"cluster"`
	// Subset is the endpoint subset the route selects in its cluster ("writable", "readable", "broker_name=X"),
	// empty for the whole cluster.
	Subset string `json:"subset,omitempty"`
}

// Rules reads a topic's route table (TopicRoute's) back into rules, in match order.
func Rules(rc *rmqv3.RouteConfiguration) []Rule {
	var out []Rule
	for _, r := range rc.GetRoutes() {
		rule := Rule{Kind: "unknown", Cluster: r.GetRoute().GetCluster()}
		headers := map[string]string{}
		for _, h := range r.GetMatch().GetHeaders() {
			sm := h.GetStringMatch()
			v := sm.GetExact()
			if re := sm.GetSafeRegex(); re != nil {
				v = re.GetRegex()
			}
			headers[h.GetName()] = v
			if h.GetName() == HeaderCode {
				rule.Codes, rule.Inverted = v, h.GetInvertMatch()
			} else {
				rule.Headers = append(rule.Headers, h.GetName()+"="+v)
			}
		}
		codes := strings.Split(rule.Codes, "|")
		is := func(want []int32) bool {
			return len(codes) == len(want) && !slices.ContainsFunc(want, func(c int32) bool { return !slices.Contains(codes, fmt.Sprint(c)) })
		}
		switch {
		case rule.Inverted && is(AckCodes):
			rule.Kind = "other"
		case rule.Inverted:
		case is(PullCodes) && headers[HeaderConsumerGroup] != "":
			rule.Kind, rule.Detail = "pop", "group "+headers[HeaderConsumerGroup]
			if how := r.GetRoute().GetMetadataMatch().GetFilterMetadata()[PopNamespace].GetFields(); how != nil {
				rule.Detail += fmt.Sprintf(", invisible %gs", how[KeyInvisibleTimeMs].GetNumberValue()/1000)
				if how[KeyOrdered].GetBoolValue() {
					rule.Detail += ", ordered"
				}
			}
		case is(SendCodes):
			rule.Kind = "send"
		case is(ConsumeCodes):
			rule.Kind = "consume"
		case is(AckCodes):
			rule.Kind, rule.Detail = "ack", "from "+headers[HeaderBrokerName]+" (id "+headers[HeaderBrokerID]+")"
		}
		for k, v := range r.GetRoute().GetMetadataMatch().GetFilterMetadata()[LBNamespace].GetFields() {
			switch x := v.GetKind().(type) {
			case *structpb.Value_BoolValue:
				if x.BoolValue {
					rule.Subset = k
				}
			case *structpb.Value_StringValue:
				rule.Subset = k + "=" + x.StringValue
			}
		}
		out = append(out, rule)
	}
	return out
}
