// Package translate turns the routing model into Envoy resources. It is pure: no state, no I/O; the same model
// always yields the same resources, byte for byte when marshalled deterministically.
//
//   - A BrokerSet becomes one Cluster (EDS, with lb_subset_config) and one ClusterLoadAssignment, both named by
//     content: "rmq-<broker cluster>-<hash>". A topic never names a cluster.
//   - A Topic becomes one RocketMQ RouteConfiguration named by the topic: send codes to the writable subset, pop
//     and pull codes to the readable subset, acks to the broker that popped, everything else to the cluster.
//   - A node's scope (its topics) becomes one RocketmqProxy filter config delivered by ECDS, plus the Listener
//     that names it, so route changes never drain listeners.
//
// The endpoint metadata follows Envoy's RocketMQ filter (contrib/rocketmq_proxy): it answers route queries (105)
// from the hosts' metadata, so every endpoint carries all six keys, and the route's metadata_match values have the
// same types as the endpoints' envoy.lb values.
package translate
