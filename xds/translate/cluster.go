package translate

import (
	"net"
	"slices"
	"strconv"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/rocketpilot/rocketpilot/routing"
)

// adsSource is the config source of everything rocketpilot serves: the ADS stream that delivered it.
func adsSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
		ResourceApiVersion:    corev3.ApiVersion_V3,
	}
}

// Cluster is a broker set's cluster: EDS from the ADS stream, round robin, with subsets that let routes pick one
// group's carrier (broker_name), the writable masters, or the readable brokers. A route without metadata_match
// (route queries and anything else) may use any endpoint; a route with one never falls back to another subset.
func Cluster(set *routing.BrokerSet) *clusterv3.Cluster {
	noFallback := clusterv3.Cluster_LbSubsetConfig_LbSubsetSelector_NO_FALLBACK
	c := edsCluster(ClusterName(set))
	c.LbSubsetConfig = &clusterv3.Cluster_LbSubsetConfig{
		FallbackPolicy: clusterv3.Cluster_LbSubsetConfig_ANY_ENDPOINT,
		SubsetSelectors: []*clusterv3.Cluster_LbSubsetConfig_LbSubsetSelector{
			{Keys: []string{SubsetBrokerName}, FallbackPolicy: noFallback},
			{Keys: []string{SubsetWritable}, FallbackPolicy: noFallback},
			{Keys: []string{SubsetReadable}, FallbackPolicy: noFallback},
		},
	}
	return c
}

// carrier returns the address of a member that carries its queue data: the master, or the lowest broker id when
// the master is gone. Envoy emits one QueueData per host it walks, so only the carrier reports queue counts and
// perm; the other brokers report zero, which RocketMQ clients skip (neither readable nor writable).
func carrier(m *routing.Member) int64 {
	if len(m.Addrs) == 0 {
		return -1
	}
	return m.Addrs[0].ID
}

// LoadAssignment is a broker set's endpoints: every broker of every group (masters and slaves), each with the
// RocketMQ filter metadata keys and the subset keys. Brokers whose address is not host:port with a numeric port
// are left out (they could not be dialled either).
func LoadAssignment(set *routing.BrokerSet) *endpointv3.ClusterLoadAssignment {
	return loadAssignment(set, ClusterName(set), func(*routing.Member, routing.BrokerAddr) bool { return true })
}

// Weighted reports whether a broker set carries the send weights of a weighted TopicRoute.
func Weighted(set *routing.BrokerSet) bool {
	return slices.ContainsFunc(set.Members, func(m routing.Member) bool { return m.Weight > 0 })
}

// ClusterNames are the clusters a broker set becomes: its cluster, and for a weighted set its send cluster.
func ClusterNames(set *routing.BrokerSet) []string {
	if Weighted(set) {
		return []string{ClusterName(set), SendClusterName(set)}
	}
	return []string{ClusterName(set)}
}

// SendClusterName names a weighted broker set's send cluster.
func SendClusterName(set *routing.BrokerSet) string { return ClusterName(set) + "-send" }

// SendCluster is a weighted broker set's send cluster: its writable masters only, weighted. In Envoy a host
// has one weight whatever subset picks it, and a master is also the broker that carries its group's queues:
// weights on the main cluster would skew consumption as much as sends, so sends get a cluster of their own.
func SendCluster(set *routing.BrokerSet) *clusterv3.Cluster { return edsCluster(SendClusterName(set)) }

// edsCluster is a cluster whose endpoints come by EDS from the ADS stream, round robin, connect timeout 3 s.
func edsCluster(name string) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: adsSource(), ServiceName: name},
		ConnectTimeout:       durationpb.New(3 * time.Second),
		LbPolicy:             clusterv3.Cluster_ROUND_ROBIN,
	}
}

// SendLoadAssignment is the send cluster's endpoints: each writable master with a weight above zero, its weight
// the group's share of sends.
func SendLoadAssignment(set *routing.BrokerSet) *endpointv3.ClusterLoadAssignment {
	cla := loadAssignment(set, SendClusterName(set), func(m *routing.Member, a routing.BrokerAddr) bool {
		return a.ID == 0 && m.Writable() && m.Weight > 0
	})
	for _, loc := range cla.Endpoints {
		for _, lb := range loc.LbEndpoints {
			name := lb.GetMetadata().GetFilterMetadata()[FilterNamespace].GetFields()[KeyBrokerName].GetStringValue()
			lb.LoadBalancingWeight = wrapperspb.UInt32(uint32(set.Member(name).Weight))
			delete(lb.Metadata.FilterMetadata, LBNamespace) // the send cluster has no subsets
		}
	}
	return cla
}

func loadAssignment(set *routing.BrokerSet, name string, include func(*routing.Member, routing.BrokerAddr) bool) *endpointv3.ClusterLoadAssignment {
	byZone := map[string]*endpointv3.LocalityLbEndpoints{}
	var zones []string
	for i := range set.Members {
		m := &set.Members[i]
		for _, a := range m.Addrs {
			if !include(m, a) {
				continue
			}
			host, portText, err := net.SplitHostPort(a.Addr)
			if err != nil {
				continue
			}
			port, err := strconv.ParseUint(portText, 10, 16)
			if err != nil || host == "" {
				continue
			}
			loc := byZone[m.Zone]
			if loc == nil {
				loc = &endpointv3.LocalityLbEndpoints{}
				if m.Zone != "" {
					loc.Locality = &corev3.Locality{Zone: m.Zone}
				}
				byZone[m.Zone] = loc
				zones = append(zones, m.Zone)
			}
			lb := &endpointv3.LbEndpoint{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
					Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
						Address:       host,
						PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(port)},
					}}},
				}},
				Metadata: endpointMetadata(m, a),
			}
			loc.LbEndpoints = append(loc.LbEndpoints, lb)
		}
	}
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: name}
	sortStrings(zones)
	for _, z := range zones {
		cla.Endpoints = append(cla.Endpoints, byZone[z])
	}
	return cla
}

// endpointMetadata is what Envoy's filter reads from a host (FilterNamespace) and, on carriers, the subset keys.
// Numbers that are zero are left out: Envoy reads a missing broker_id, perm or queue count as zero (it checks
// for each before reading it), and most hosts have several — a master's id, and all three queue figures of a
// broker that carries no queues. broker_name and cluster_name are read unchecked, so they are always there.
func endpointMetadata(m *routing.Member, a routing.BrokerAddr) *corev3.Metadata {
	var perm, readQueues, writeQueues int32
	isCarrier := a.ID == carrier(m)
	if isCarrier {
		perm, readQueues, writeQueues = m.Perm, m.ReadQueueNums, m.WriteQueueNums
	}
	rocketmq := map[string]*structpb.Value{
		KeyBrokerName:  structpb.NewStringValue(m.BrokerName),
		KeyClusterName: structpb.NewStringValue(m.Cluster),
	}
	number := func(key string, n int64) {
		if n != 0 {
			rocketmq[key] = structpb.NewNumberValue(float64(n))
		}
	}
	number(KeyBrokerID, a.ID)
	number(KeyPerm, int64(perm))
	number(KeyReadQueueNum, int64(readQueues))
	number(KeyWriteQueueNum, int64(writeQueues))
	md := &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{FilterNamespace: {Fields: rocketmq}}}
	if !isCarrier {
		// Every route that picks a subset picks carriers: sends go to masters with queues, pops to carriers, acks
		// back to the carrier that popped. The other brokers serve route queries only and need no subset keys.
		return md
	}
	lb := map[string]*structpb.Value{SubsetBrokerName: structpb.NewStringValue(m.BrokerName)}
	if a.ID == 0 && m.Writable() {
		lb[SubsetWritable] = structpb.NewBoolValue(true)
	}
	if m.Readable() {
		lb[SubsetReadable] = structpb.NewBoolValue(true)
	}
	md.FilterMetadata[LBNamespace] = &structpb.Struct{Fields: lb}
	return md
}
