package translate

import (
	"strings"

	"github.com/rocketpilot/rocketpilot/routing"
)

// Type URLs of the resources rocketpilot serves.
const (
	ClusterType   = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	EndpointType  = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
	ListenerType  = "type.googleapis.com/envoy.config.listener.v3.Listener"
	ExtensionType = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig"
	// RouteType is the RocketMQ filter's route table: one resource per topic, named by the topic. Envoy has no
	// discovery service for it (the filter has no RDS); Go sidecars subscribe to it by topic name, and Envoy gets
	// the routes of its topics inside the ECDS filter config.
	RouteType = "type.googleapis.com/envoy.extensions.filters.network.rocketmq_proxy.v3.RouteConfiguration"
	// ProxyType is the RocketMQ network filter's config.
	ProxyType = "type.googleapis.com/envoy.extensions.filters.network.rocketmq_proxy.v3.RocketmqProxy"
)

// Well-known names.
const (
	// FilterNamespace is the RocketMQ filter's name and the endpoint metadata namespace it reads.
	FilterNamespace = "envoy.filters.network.rocketmq_proxy"
	// LBNamespace is the metadata namespace of the subset load balancer.
	LBNamespace = "envoy.lb"
	// ExtensionConfigName names the ECDS resource holding a node's RocketmqProxy config; it is also the name of
	// the listener's filter, which is how Envoy subscribes to it.
	ExtensionConfigName = "rocketmq-proxy"
	// ListenerName names the RocketMQ listener.
	ListenerName = "rocketmq"
)

// Endpoint metadata keys read by Envoy's RocketMQ filter (namespace FilterNamespace). The numbers are left out
// when zero, which Envoy reads as zero.
const (
	KeyBrokerName    = "broker_name"     // string
	KeyClusterName   = "cluster_name"    // string: the broker cluster
	KeyBrokerID      = "broker_id"       // number
	KeyPerm          = "perm"            // number
	KeyReadQueueNum  = "read_queue_num"  // number
	KeyWriteQueueNum = "write_queue_num" // number
)

// Subset keys (namespace LBNamespace), on each group's carrier only (see LoadAssignment).
const (
	SubsetBrokerName = "broker_name" // string: picks the group's carrier, the only endpoint of the group with subset keys
	SubsetWritable   = "writable"    // bool true, on the master of a group the topic may be sent to
	SubsetReadable   = "readable"    // bool true, on the broker that carries a readable group's queues
)

// ClusterName names a broker set's cluster by its content: "rmq-<broker cluster>-<hash>". Sets spanning several
// broker clusters join their names with "+".
func ClusterName(set *routing.BrokerSet) string {
	clusters := set.Clusters()
	label := "none"
	if len(clusters) > 0 {
		label = strings.Join(clusters, "+")
	}
	return "rmq-" + sanitize(label) + "-" + set.Hash
}

// sanitize keeps a label readable and safe in resource names and stat names.
func sanitize(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '+', r == '.':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	return b.String()
}

// IsClusterName reports whether a name has the shape of a cluster ClusterName or SendClusterName gives some broker
// set: "rmq-", a label, "-", 16 hex digits, optionally "-send". A replica that does not know the broker set (it
// went away before the replica started) can still tell a name another replica served from one no replica could.
func IsClusterName(name string) bool {
	name = strings.TrimSuffix(name, "-send")
	rest, ok := strings.CutPrefix(name, "rmq-")
	i := strings.LastIndexByte(rest, '-')
	if !ok || i < 1 || len(rest)-i-1 != 16 || sanitize(rest[:i]) != rest[:i] {
		return false
	}
	for _, r := range rest[i+1:] {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') {
			return false
		}
	}
	return true
}
