package translate

import (
	"net"
	"slices"
	"strconv"
	"strings"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"

	"github.com/rocketpilot/rocketpilot/remoting"
)

// EnvoyTopicRoute rebuilds the TopicRouteData Envoy's RocketMQ filter answers to a route query (105) from a
// cluster's endpoints, as ActiveMessage::onQueryTopicRoute does: every host adds a QueueData from its metadata
// and its address to its group's BrokerData. Missing numbers read as zero, as in Envoy.
func EnvoyTopicRoute(cla *endpointv3.ClusterLoadAssignment) *remoting.TopicRouteData {
	out := &remoting.TopicRouteData{}
	for _, loc := range cla.GetEndpoints() {
		for _, lb := range loc.GetLbEndpoints() {
			sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
			addr := net.JoinHostPort(sa.GetAddress(), strconv.FormatUint(uint64(sa.GetPortValue()), 10))
			f := lb.GetMetadata().GetFilterMetadata()[FilterNamespace].GetFields()
			name := f[KeyBrokerName].GetStringValue()
			cluster := f[KeyClusterName].GetStringValue()
			id := int64(f[KeyBrokerID].GetNumberValue())
			out.QueueDatas = append(out.QueueDatas, remoting.QueueData{
				BrokerName:     name,
				ReadQueueNums:  int32(f[KeyReadQueueNum].GetNumberValue()),
				WriteQueueNums: int32(f[KeyWriteQueueNum].GetNumberValue()),
				Perm:           int32(f[KeyPerm].GetNumberValue()),
			})
			i := slices.IndexFunc(out.BrokerDatas, func(b remoting.BrokerData) bool {
				return b.Cluster == cluster && b.BrokerName == name
			})
			if i < 0 {
				out.BrokerDatas = append(out.BrokerDatas, remoting.BrokerData{Cluster: cluster, BrokerName: name,
					BrokerAddrs: map[int64]string{}})
				i = len(out.BrokerDatas) - 1
			}
			if _, dup := out.BrokerDatas[i].BrokerAddrs[id]; !dup { // Envoy keeps the first and warns
				out.BrokerDatas[i].BrokerAddrs[id] = addr
			}
		}
	}
	return out
}

// ClientTopicRoute is EnvoyTopicRoute as a RocketMQ client reads it: Envoy adds one QueueData per host, and only
// the host that carries a group's queues (its master, or its lowest broker id) has non-zero counts and perm, so
// the others — which clients skip, being neither readable nor writable — are dropped, leaving one QueueData per
// group, sorted by broker name; the group's zone comes from the endpoints' locality. This is what a NameServer
// answers for the topic (topicSysFlag and orderTopicConf aside, which the served resources do not carry).
func ClientTopicRoute(cla *endpointv3.ClusterLoadAssignment) *remoting.TopicRouteData {
	envoy := EnvoyTopicRoute(cla)
	out := &remoting.TopicRouteData{BrokerDatas: envoy.BrokerDatas}
	carrier := map[string]int64{}
	for _, b := range envoy.BrokerDatas {
		lowest := int64(-1)
		for id := range b.BrokerAddrs {
			if lowest < 0 || id < lowest {
				lowest = id
			}
		}
		carrier[b.BrokerName] = lowest
	}
	// Envoy leaves zoneName out; the served endpoints carry it as their locality, so a client gets it back.
	for _, loc := range cla.GetEndpoints() {
		zone := loc.GetLocality().GetZone()
		if zone == "" {
			continue
		}
		for _, lb := range loc.GetLbEndpoints() {
			name := lb.GetMetadata().GetFilterMetadata()[FilterNamespace].GetFields()[KeyBrokerName].GetStringValue()
			for i := range out.BrokerDatas {
				if out.BrokerDatas[i].BrokerName == name {
					out.BrokerDatas[i].ZoneName = zone
				}
			}
		}
	}
	// QueueDatas follow host order; pick each group's entry from its carrier host.
	hostIDs := hostBrokerIDs(cla)
	for i, q := range envoy.QueueDatas {
		if hostIDs[i] == carrier[q.BrokerName] && !slices.ContainsFunc(out.QueueDatas, func(x remoting.QueueData) bool {
			return x.BrokerName == q.BrokerName
		}) {
			out.QueueDatas = append(out.QueueDatas, q)
		}
	}
	slices.SortFunc(out.QueueDatas, func(a, b remoting.QueueData) int { return strings.Compare(a.BrokerName, b.BrokerName) })
	slices.SortFunc(out.BrokerDatas, func(a, b remoting.BrokerData) int { return strings.Compare(a.BrokerName, b.BrokerName) })
	return out
}

func hostBrokerIDs(cla *endpointv3.ClusterLoadAssignment) []int64 {
	var ids []int64
	for _, loc := range cla.GetEndpoints() {
		for _, lb := range loc.GetLbEndpoints() {
			f := lb.GetMetadata().GetFilterMetadata()[FilterNamespace].GetFields()
			ids = append(ids, int64(f[KeyBrokerID].GetNumberValue()))
		}
	}
	return ids
}

// Target is one broker an operation's subset holds, with its endpoint weight (0 when none is set, which Envoy
// reads as 1).
type Target struct {
	BrokerName string `json:"brokerName"`
	BrokerID   int64  `json:"brokerId"`
	Addr       string `json:"addr"`
	Weight     uint32 `json:"weight,omitempty"`
}

// Targets returns the endpoints of a cluster in one boolean subset (SubsetWritable, SubsetReadable), or every
// endpoint for "": where the routes that pick it send, in endpoint order.
func Targets(cla *endpointv3.ClusterLoadAssignment, subset string) []Target {
	var out []Target
	for _, loc := range cla.GetEndpoints() {
		for _, lb := range loc.GetLbEndpoints() {
			md := lb.GetMetadata().GetFilterMetadata()
			if subset != "" && !md[LBNamespace].GetFields()[subset].GetBoolValue() {
				continue
			}
			f := md[FilterNamespace].GetFields()
			sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
			out = append(out, Target{BrokerName: f[KeyBrokerName].GetStringValue(), BrokerID: int64(f[KeyBrokerID].GetNumberValue()),
				Addr:   net.JoinHostPort(sa.GetAddress(), strconv.FormatUint(uint64(sa.GetPortValue()), 10)),
				Weight: lb.GetLoadBalancingWeight().GetValue()})
		}
	}
	return out
}
