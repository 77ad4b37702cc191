package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	rmqv3 "github.com/envoyproxy/go-control-plane/contrib/envoy/extensions/filters/network/rocketmq_proxy/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/experimental"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/rocketpilot/rocketpilot/xds/cache"
	"github.com/rocketpilot/rocketpilot/xds/translate"
)

// envoy is a simulated Envoy: one delta ADS stream for a node whose metadata scopes it to its topics. Like Envoy
// it takes clusters by a CDS wildcard, then the listener by an LDS wildcard, then the RocketMQ filter's config by
// ECDS (by the filter's name), asks for the endpoints of every cluster it newly receives and drops those of the
// clusters CDS removes, and ACKs every response at once. It records when it ACKed a config that moved a topic to
// another cluster.
type envoy struct {
	id     int
	topics []string
	node   *corev3.Node
	conn   *grpc.ClientConn

	mu       sync.Mutex
	clusters map[string]bool   // clusters it holds (CDS)
	eds      map[string]bool   // clusters whose endpoints arrived
	routes   map[string]string // topic → cluster, in the last ECDS config it ACKed
	synced   chan struct{}     // closed when its config routes every topic to a cluster whose endpoints it holds
	moves    []routeMove       // every ACKed config's route to a cluster other than the topic's previous one
	streams  int
	received map[string]int // responses by type, over every stream
	bytes    int64          // protobuf bytes of the responses received
}

// routeMove is an ECDS config the envoy ACKed at `at`, in which topic routes to cluster.
type routeMove struct {
	topic, cluster string
	at             time.Time
}

// scopedNode is a node whose metadata scopes it to topics (cache.MetadataTopicsKey).
func scopedNode(id string, topics []string) *corev3.Node {
	vals := make([]*structpb.Value, len(topics))
	for i, t := range topics {
		vals[i] = structpb.NewStringValue(t)
	}
	return &corev3.Node{Id: id, Metadata: &structpb.Struct{Fields: map[string]*structpb.Value{
		cache.MetadataTopicsKey: structpb.NewListValue(&structpb.ListValue{Values: vals}),
	}}}
}

func newEnvoys(addr string, n int, topicsOf func(int) []string) []*envoy {
	conns := dialSims(addr, n)
	envoys := make([]*envoy, n)
	for i := range envoys {
		topics := topicsOf(i)
		envoys[i] = &envoy{id: i, topics: topics, node: scopedNode(fmt.Sprintf("envoy-%d", i), topics), conn: conns[i/streamsPerConn],
			received: map[string]int{}}
	}
	return envoys
}

func (e *envoy) run(ctx context.Context) { keepOpen(ctx, e.stream) }

func (e *envoy) stream(ctx context.Context) error {
	// Envoy's envoy_grpc client names no compressor in grpc-accept-encoding, so it gets plain responses.
	st, err := discovery.NewAggregatedDiscoveryServiceClient(e.conn).DeltaAggregatedResources(ctx, experimental.AcceptCompressors())
	if err != nil {
		return err
	}
	e.mu.Lock()
	e.clusters, e.eds, e.routes = map[string]bool{}, map[string]bool{}, map[string]string{}
	e.synced = make(chan struct{})
	e.streams++
	e.mu.Unlock()
	// Envoy's start: clusters first, the listener once it has them, the listener's filter config once it has the
	// listener.
	if err := st.Send(&discovery.DeltaDiscoveryRequest{Node: e.node, TypeUrl: translate.ClusterType}); err != nil {
		return err
	}
	asked := map[string]bool{translate.ClusterType: true}
	next := map[string]*discovery.DeltaDiscoveryRequest{
		translate.ClusterType:  {TypeUrl: translate.ListenerType},
		translate.ListenerType: {TypeUrl: translate.ExtensionType, ResourceNamesSubscribe: []string{translate.ExtensionConfigName}},
	}
	for {
		resp, err := st.Recv()
		if err != nil {
			return err
		}
		var subscribe, unsubscribe []string
		var routes map[string]string
		e.mu.Lock()
		e.received[resp.TypeUrl]++
		e.bytes += int64(proto.Size(resp))
		switch resp.TypeUrl {
		case translate.ClusterType:
			for _, r := range resp.Resources {
				if !e.clusters[r.Name] {
					e.clusters[r.Name] = true
					subscribe = append(subscribe, r.Name)
				}
			}
			for _, name := range resp.RemovedResources {
				if e.clusters[name] {
					delete(e.clusters, name)
					delete(e.eds, name)
					unsubscribe = append(unsubscribe, name)
				}
			}
		case translate.EndpointType:
			for _, r := range resp.Resources {
				e.eds[r.Name] = true
			}
		case translate.ExtensionType:
			for _, r := range resp.Resources {
				if r.Name == translate.ExtensionConfigName {
					routes = configRoutes(r.Resource.GetValue())
				}
			}
		}
		e.mu.Unlock()
		if err := st.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: resp.TypeUrl, ResponseNonce: resp.Nonce}); err != nil {
			return err
		}
		acked := time.Now()
		if len(subscribe)+len(unsubscribe) > 0 {
			if err := st.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: translate.EndpointType,
				ResourceNamesSubscribe: subscribe, ResourceNamesUnsubscribe: unsubscribe}); err != nil {
				return err
			}
		}
		if req := next[resp.TypeUrl]; req != nil && !asked[req.TypeUrl] {
			asked[req.TypeUrl] = true
			if err := st.Send(req); err != nil {
				return err
			}
		}
		e.mu.Lock()
		if routes != nil {
			for _, t := range slices.Sorted(maps.Keys(routes)) {
				if routes[t] != e.routes[t] {
					e.moves = append(e.moves, routeMove{topic: t, cluster: routes[t], at: acked})
				}
			}
			e.routes = routes
		}
		if len(e.routes) == len(e.topics) && !slices.ContainsFunc(slices.Collect(maps.Values(e.routes)), func(c string) bool { return !e.eds[c] }) {
			select {
			case <-e.synced:
			default:
				close(e.synced)
			}
		}
		e.mu.Unlock()
	}
}

// configRoutes decodes an ECDS resource (a TypedExtensionConfig holding a RocketmqProxy) into the cluster each
// topic's last route names: the whole cluster, which every topic's route table ends with.
func configRoutes(b []byte) map[string]string {
	var ext corev3.TypedExtensionConfig
	var proxy rmqv3.RocketmqProxy
	if proto.Unmarshal(b, &ext) != nil || proto.Unmarshal(ext.GetTypedConfig().GetValue(), &proxy) != nil {
		return nil
	}
	routes := map[string]string{}
	for _, r := range proxy.GetRouteConfig().GetRoutes() {
		if t := r.GetMatch().GetTopic().GetExact(); t != "" {
			routes[t] = r.GetRoute().GetCluster()
		}
	}
	return routes
}

func (e *envoy) syncedCh() chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.synced
}

// traffic returns the responses the envoy received by type, and their protobuf bytes.
func (e *envoy) traffic() (map[string]int, int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return maps.Clone(e.received), e.bytes
}

// ackedAt returns when the envoy first ACKed, at or after t0, a config routing topic to cluster.
func (e *envoy) ackedAt(topic, cluster string, t0 time.Time) (time.Time, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, m := range e.moves {
		if m.topic == topic && m.cluster == cluster && !m.at.Before(t0) {
			return m.at, true
		}
	}
	return time.Time{}, false
}
