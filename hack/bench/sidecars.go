package main

import (
	"context"
	"fmt"
	"log"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	rmqv3 "github.com/envoyproxy/go-control-plane/contrib/envoy/extensions/filters/network/rocketmq_proxy/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	_ "google.golang.org/grpc/encoding/gzip" // the sims accept gzip, as the Go sidecar client does
	"google.golang.org/grpc/stats"
	"google.golang.org/protobuf/proto"

	"github.com/rocketpilot/rocketpilot/xds/translate"
)

// sim is a simulated Go sidecar: one delta ADS stream subscribed to its topics' routes and to the endpoints of
// the clusters they name. It ACKs everything, reconnects on its own, and records what it receives.
type sim struct {
	id     int
	topics []string
	conn   *grpc.ClientConn

	mu       sync.Mutex
	clusters map[string]bool             // clusters whose endpoints it subscribed to
	routes   map[string]string           // topic → cluster of its current route
	eds      map[string]bool             // clusters whose endpoints arrived
	synced   chan struct{}               // closed when every topic and cluster has arrived on the current stream
	onRoute  func(topic, version string) // called for every route received, with the resource's version
	streams  int

	bytes      atomic.Int64 // protobuf bytes of the responses received
	routeBytes atomic.Int64 // of bytes, in route responses
	wire       atomic.Int64 // bytes of the same responses on the wire (gRPC message frames, compressed)
	badWorlds  atomic.Int64 // responses that removed a topic that exists: an empty or partial world
}

// simKey carries a stream's sim in its context, for wireCounter.
type simKey struct{}

// wireCounter is a client stats handler that adds each response's size on the wire (its gRPC message frame,
// after compression) to the sim of the stream it arrived on. grpc-go calls it before RecvMsg returns.
type wireCounter struct{}

func (wireCounter) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context   { return ctx }
func (wireCounter) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (wireCounter) HandleConn(context.Context, stats.ConnStats)                       {}
func (wireCounter) HandleRPC(ctx context.Context, st stats.RPCStats) {
	if in, ok := st.(*stats.InPayload); ok {
		if s, ok := ctx.Value(simKey{}).(*sim); ok {
			s.wire.Add(int64(in.WireLength))
		}
	}
}

// streamsPerConn is how many simulated streams share one gRPC connection.
const streamsPerConn = 100

// dialSims opens the connections n simulated streams share: stream i uses the connection at i/streamsPerConn.
func dialSims(addr string, n int) []*grpc.ClientConn {
	var conns []*grpc.ClientConn
	for i := 0; i < (n+streamsPerConn-1)/streamsPerConn; i++ {
		c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithStatsHandler(wireCounter{}))
		if err != nil {
			log.Fatal(err)
		}
		conns = append(conns, c)
	}
	return conns
}

func newSims(addr string, n int, topicsOf func(int) []string) []*sim {
	conns := dialSims(addr, n)
	sims := make([]*sim, n)
	for i := range sims {
		sims[i] = &sim{id: i, topics: topicsOf(i), conn: conns[i/streamsPerConn]}
	}
	return sims
}

// run keeps the sim's stream open until ctx ends, resubscribing from scratch after every reconnect (the worst
// case for the server: nothing declared in initial_resource_versions).
func (s *sim) run(ctx context.Context) { keepOpen(ctx, s.stream) }

// keepOpen runs a simulated client's stream until ctx ends, opening it again after a jittered backoff whenever
// it ends.
func keepOpen(ctx context.Context, stream func(context.Context) error) {
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		err := stream(ctx)
		if ctx.Err() != nil {
			return
		}
		_ = err
		sleep := backoff/2 + rand.N(backoff) // jitter spreads a reconnect storm
		select {
		case <-ctx.Done():
			return
		case <-time.After(sleep):
		}
		backoff = min(2*backoff, time.Second)
	}
}

func (s *sim) stream(ctx context.Context) error {
	st, err := discovery.NewAggregatedDiscoveryServiceClient(s.conn).DeltaAggregatedResources(context.WithValue(ctx, simKey{}, s))
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.clusters, s.routes, s.eds = map[string]bool{}, map[string]string{}, map[string]bool{}
	s.synced = make(chan struct{})
	s.streams++
	s.mu.Unlock()
	var sendMu sync.Mutex
	send := func(r *discovery.DeltaDiscoveryRequest) error {
		sendMu.Lock()
		defer sendMu.Unlock()
		return st.Send(r)
	}
	if err := send(&discovery.DeltaDiscoveryRequest{Node: &corev3.Node{Id: fmt.Sprintf("sim-%d", s.id)},
		TypeUrl: translate.RouteType, ResourceNamesSubscribe: s.topics}); err != nil {
		return err
	}
	for {
		resp, err := st.Recv()
		if err != nil {
			return err
		}
		size := int64(proto.Size(resp))
		s.bytes.Add(size)
		if resp.TypeUrl == translate.RouteType {
			s.routeBytes.Add(size)
		}
		var newClusters []string
		s.mu.Lock()
		switch resp.TypeUrl {
		case translate.RouteType:
			for _, r := range resp.Resources {
				var rc rmqv3.RouteConfiguration
				if err := proto.Unmarshal(r.Resource.Value, &rc); err != nil || translate.DefaultCluster(&rc) == "" {
					continue
				}
				cluster := translate.DefaultCluster(&rc)
				s.routes[r.Name] = cluster
				if !s.clusters[cluster] {
					s.clusters[cluster] = true
					newClusters = append(newClusters, cluster)
				}
				if s.onRoute != nil {
					s.onRoute(r.Name, r.Version)
				}
			}
			if len(resp.RemovedResources) > 0 {
				s.badWorlds.Add(int64(len(resp.RemovedResources))) // every workload topic exists
			}
		case translate.EndpointType:
			for _, r := range resp.Resources {
				s.eds[r.Name] = true
			}
		}
		if len(s.routes) == len(s.topics) && len(s.eds) == len(s.clusters) {
			select {
			case <-s.synced:
			default:
				close(s.synced)
			}
		}
		s.mu.Unlock()
		if err := send(&discovery.DeltaDiscoveryRequest{TypeUrl: resp.TypeUrl, ResponseNonce: resp.Nonce}); err != nil {
			return err
		}
		if len(newClusters) > 0 {
			if err := send(&discovery.DeltaDiscoveryRequest{TypeUrl: translate.EndpointType, ResourceNamesSubscribe: newClusters}); err != nil {
				return err
			}
		}
	}
}

func (s *sim) syncedCh() chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.synced
}

// simClient is a simulated client: a Go sidecar (sim) or an Envoy (envoy).
type simClient interface {
	run(ctx context.Context)
	syncedCh() chan struct{}
}

// startSims runs every simulated client on wg until ctx ends, and returns once each has its whole world.
func startSims[S simClient](ctx context.Context, wg *sync.WaitGroup, sims []S, what string) {
	start := time.Now()
	for _, s := range sims {
		wg.Go(func() { s.run(ctx) })
	}
	if !waitSynced(sims, 5*time.Minute) {
		log.Fatalf("%d %s did not sync", len(sims), what)
	}
	log.Printf("%d %s synced in %v", len(sims), what, time.Since(start).Round(time.Millisecond))
}

// waitSynced waits until every simulated client (sidecar or Envoy) has its whole world on its current stream.
func waitSynced[S interface{ syncedCh() chan struct{} }](sims []S, timeout time.Duration) bool {
	deadline := time.After(timeout)
	for _, s := range sims {
		for {
			ch := s.syncedCh()
			if ch == nil {
				time.Sleep(time.Millisecond)
				continue
			}
			select {
			case <-ch:
			case <-deadline:
				return false
			}
			break
		}
	}
	return true
}
