package main

import (
	"context"
	"fmt"
	"log"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	gcpcache "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	gcpserver "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

// baselineResult holds the naive design's figures, used as baselines of rocketpilot's.
type baselineResult struct {
	topics, nodes  int
	setAll         time.Duration // SetSnapshot for every node, cold
	coldPush       time.Duration // until every node has the first snapshot
	changeP99      *float64      // ms, change → every stream has the new version
	bytesPerChange *float64      // per stream
	heapPerTopic   *float64      // B: the snapshot set for every node, before any stream
	heapPerNode    *float64      // B: what every node's synced stream adds, client side included
}

// forTopics returns v when n topics match the baseline's topic count.
func (b baselineResult) forTopics(n int, v *float64) *float64 {
	if n != b.topics {
		return nil
	}
	return v
}

// forStreams returns v when k streams match the baseline's node count, so that a figure gets a baseline only
// where the two runs have the same shape.
func (b baselineResult) forStreams(k int, v *float64) *float64 {
	if k != b.nodes {
		return nil
	}
	return v
}

func (b baselineResult) figures() []Figure {
	if b.nodes == 0 {
		return nil
	}
	n := fmt.Sprintf("%s topics, %d nodes", human(b.topics), b.nodes)
	figs := []Figure{
		{Name: "baseline: cold push of one cluster per topic to every node, " + n, Value: round(b.coldPush.Seconds(), 2), Unit: "s", lowerIsBetter: true},
		{Name: "baseline: SetSnapshot for every node, " + n, Value: round(b.setAll.Seconds(), 2), Unit: "s", lowerIsBetter: true},
	}
	if b.heapPerTopic != nil {
		figs = append(figs, Figure{Name: "baseline: heap per topic (snapshot set for every node), " + n, Value: *b.heapPerTopic, Unit: "B", lowerIsBetter: true})
	}
	if b.heapPerNode != nil {
		figs = append(figs, Figure{Name: "baseline: heap per synced node, both sides, " + n, Value: round(*b.heapPerNode/1024, 1), Unit: "KiB", lowerIsBetter: true})
	}
	if b.changeP99 != nil {
		figs = append(figs, Figure{Name: "baseline: change → ACK p99, " + n, Value: *b.changeP99, Unit: "ms", lowerIsBetter: true})
	}
	if b.bytesPerChange != nil {
		figs = append(figs, Figure{Name: "baseline: bytes per change per stream (every stream), " + n, Value: *b.bytesPerChange, Unit: "B", lowerIsBetter: true})
	}
	return figs
}

// runBaseline serves go-control-plane's SnapshotCache with one EDS cluster per topic to every node over
// state-of-the-world CDS — the design that collapses at scale — and changes one topic a few times.
func runBaseline(cfg config) baselineResult {
	res := baselineResult{topics: cfg.baselineTopics, nodes: cfg.baselineNodes}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	snapCache := gcpcache.NewSnapshotCache(false, gcpcache.IDHash{}, nil)
	g := grpc.NewServer(grpc.MaxConcurrentStreams(100_000), grpc.MaxSendMsgSize(1<<30))
	discovery.RegisterAggregatedDiscoveryServiceServer(g, gcpserver.NewServer(ctx, snapCache, nil))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go g.Serve(lis)
	defer g.Stop()

	snapshot := func(version string, changed int) *gcpcache.Snapshot {
		clusters := make([]types.Resource, cfg.baselineTopics)
		for i := range clusters {
			timeout := time.Second
			if i == 0 {
				timeout += time.Duration(changed) * time.Millisecond
			}
			clusters[i] = &clusterv3.Cluster{
				Name:                 topicName(i), // the naive design: cluster name = topic name
				ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
				EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{EdsConfig: &corev3.ConfigSource{
					ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}},
				ConnectTimeout: durationpb.New(timeout),
			}
		}
		s, err := gcpcache.NewSnapshot(version, map[resource.Type][]types.Resource{resource.ClusterType: clusters})
		if err != nil {
			log.Fatal(err)
		}
		return s
	}
	setAll := func(s *gcpcache.Snapshot) time.Duration {
		t0 := time.Now()
		for i := range cfg.baselineNodes {
			if err := snapCache.SetSnapshot(ctx, fmt.Sprintf("node-%d", i), s); err != nil {
				log.Fatal(err)
			}
		}
		return time.Since(t0)
	}

	// The heap of the naive design's state alone: the snapshot set for every node of a second cache, with no
	// stream open.
	h0 := heapNow()
	idle := gcpcache.NewSnapshotCache(false, gcpcache.IDHash{}, nil)
	s0 := snapshot("v0", 0)
	for i := range cfg.baselineNodes {
		if err := idle.SetSnapshot(ctx, fmt.Sprintf("node-%d", i), s0); err != nil {
			log.Fatal(err)
		}
	}
	snapshotHeap := heapGrowth(h0, heapNow())
	runtime.KeepAlive(idle) // measured above while still held
	res.heapPerTopic = ptr(round(snapshotHeap/float64(cfg.baselineTopics), 0))
	h1 := heapNow()

	// Clients: SotW CDS, wildcard, ACKing each version.
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(1<<30)))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	var mu sync.Mutex
	got := map[string]int{} // version → streams that have it
	arrived := map[string]time.Time{}
	var lastBytes atomic.Int64
	start := time.Now()
	for i := range cfg.baselineNodes {
		st, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
		if err != nil {
			log.Fatal(err)
		}
		st.Send(&discovery.DiscoveryRequest{Node: &corev3.Node{Id: fmt.Sprintf("node-%d", i)}, TypeUrl: resource.ClusterType})
		go func() {
			for {
				r, err := st.Recv()
				if err != nil {
					return
				}
				lastBytes.Store(int64(proto.Size(r)))
				mu.Lock()
				got[r.VersionInfo]++
				if got[r.VersionInfo] == cfg.baselineNodes {
					arrived[r.VersionInfo] = time.Now()
				}
				mu.Unlock()
				st.Send(&discovery.DiscoveryRequest{TypeUrl: resource.ClusterType, VersionInfo: r.VersionInfo, ResponseNonce: r.Nonce})
			}
		}()
	}
	wait := func(version string) time.Time {
		for {
			mu.Lock()
			t, ok := arrived[version]
			mu.Unlock()
			if ok {
				return t
			}
			time.Sleep(time.Millisecond)
		}
	}
	res.setAll = setAll(snapshot("v0", 0))
	res.coldPush = wait("v0").Sub(start)
	res.heapPerNode = ptr((heapGrowth(h1, heapNow()) - snapshotHeap) / float64(cfg.baselineNodes))
	var worst time.Duration
	for c := 1; c <= cfg.baselineChanges; c++ {
		version := fmt.Sprintf("v%d", c)
		t0 := time.Now()
		setAll(snapshot(version, c))
		worst = max(worst, wait(version).Sub(t0))
	}
	res.changeP99 = ptr(ms(worst))
	res.bytesPerChange = ptr(float64(lastBytes.Load()))
	log.Printf("baseline: %d topics to %d nodes: cold %v, change %v, %d B per stream per change",
		cfg.baselineTopics, cfg.baselineNodes, res.coldPush.Round(time.Millisecond), worst.Round(time.Millisecond), lastBytes.Load())
	return res
}
