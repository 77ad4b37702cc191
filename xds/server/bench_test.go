package server

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/rocketpilot/rocketpilot/nameserver/embedded"
	"github.com/rocketpilot/rocketpilot/routing"
	"github.com/rocketpilot/rocketpilot/xds/translate"
	"github.com/rocketpilot/rocketpilot/xds/wire"
)

// benchStream is a raw delta ADS stream that ACKs everything and reports each response.
type benchStream struct {
	st  discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
	mu  sync.Mutex
	got chan *discovery.DeltaDiscoveryResponse
}

func (b *benchStream) send(req *discovery.DeltaDiscoveryRequest) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.st.Send(req)
}

// openStreams opens n delta streams over conns connections, each subscribed to the routes topicOf(i). wire, if
// not nil, counts the bytes of every response on the wire.
func openStreams(b *testing.B, ctx context.Context, addr string, n int, topicOf func(int) string, wire *payloads) []*benchStream {
	const perConn = 100
	var conns []*grpc.ClientConn
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if wire != nil {
		opts = append(opts, grpc.WithStatsHandler(wire))
	}
	for i := 0; i < (n+perConn-1)/perConn; i++ {
		c, err := grpc.NewClient(addr, opts...)
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, c)
		b.Cleanup(func() { c.Close() })
	}
	streams := make([]*benchStream, n)
	for i := range n {
		st, err := discovery.NewAggregatedDiscoveryServiceClient(conns[i/perConn]).DeltaAggregatedResources(ctx)
		if err != nil {
			b.Fatal(err)
		}
		s := &benchStream{st: st, got: make(chan *discovery.DeltaDiscoveryResponse, 16)}
		streams[i] = s
		go func() {
			for {
				resp, err := st.Recv()
				if err != nil {
					close(s.got)
					return
				}
				s.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resp.TypeUrl, ResponseNonce: resp.Nonce})
				s.got <- resp
			}
		}()
		if err := s.send(&discovery.DeltaDiscoveryRequest{Node: &corev3.Node{Id: fmt.Sprintf("bench-%d", i)},
			TypeUrl: translate.RouteType, ResourceNamesSubscribe: []string{topicOf(i)}}); err != nil {
			b.Fatal(err)
		}
	}
	for i, s := range streams {
		select {
		case <-s.got:
		case <-time.After(30 * time.Second):
			b.Fatalf("stream %d got no first response", i)
		}
	}
	return streams
}

func percentile(d []time.Duration, p float64) time.Duration {
	slices.Sort(d)
	return d[min(len(d)-1, int(float64(len(d))*p))]
}

// BenchmarkUnknownName measures how long a subscription to a name that does not exist takes to be answered in
// removed_resources, with 1,000 other streams open.
func BenchmarkUnknownName(b *testing.B) {
	for _, compression := range Compressions {
		b.Run(compression, func(b *testing.B) { benchmarkUnknownName(b, compression) })
	}
}

func benchmarkUnknownName(b *testing.B, compression string) {
	s := startStackWith(b, embedded.LoadDemo, Options{Compression: compression, Stats: NewWireStats()}) // the options serve sets
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	openStreams(b, ctx, s.addr, 1000, func(int) string { return "TopicTest" }, nil)
	probe := openStreams(b, ctx, s.addr, 1, func(int) string { return "TopicTest" }, nil)[0]
	var lat []time.Duration
	i := 0
	for b.Loop() {
		name := fmt.Sprintf("no-such-topic-%d", i)
		i++
		start := time.Now()
		probe.send(&discovery.DeltaDiscoveryRequest{TypeUrl: translate.RouteType, ResourceNamesSubscribe: []string{name}})
		resp := <-probe.got
		lat = append(lat, time.Since(start))
		if len(resp.RemovedResources) != 1 || resp.RemovedResources[0] != name {
			b.Fatalf("answer for %s: %v", name, resp)
		}
	}
	b.ReportMetric(float64(percentile(lat, 0.5).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(percentile(lat, 0.99).Microseconds())/1000, "p99-ms")
}

// BenchmarkFanout changes one topic's route while 1,000 streams are subscribed to it and measures the time until
// every stream has the new version, the bytes each stream receives, and the process's CPU per change (server and
// clients: the clients' share is the same in both encodings). encoding=shared is how serve runs (package wire:
// the route marshalled and compressed once for every stream); encoding=each marshals and compresses every
// response on its own, as grpc does, for the comparison in the same run.
func BenchmarkFanout(b *testing.B) {
	for _, compression := range Compressions {
		for _, shared := range []bool{false, true} {
			name := map[bool]string{false: "each", true: "shared"}[shared]
			b.Run(compression+"/encoding="+name, func(b *testing.B) {
				wire.SetEnabled(shared)
				defer wire.SetEnabled(true)
				benchmarkFanout(b, compression)
			})
		}
	}
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func benchmarkFanout(b *testing.B, compression string) {
	s := startStackWith(b, embedded.LoadDemo, Options{Compression: compression, Stats: NewWireStats()}) // the options serve sets
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const topic = "fanout-topic"
	route := func(perm int32) *routing.Route {
		return &routing.Route{Members: []routing.Member{
			{Cluster: "C", BrokerName: "b1", Perm: perm, ReadQueueNums: 8, WriteQueueNums: 8, Addrs: []routing.BrokerAddr{{ID: 0, Addr: "10.1.0.1:10911"}, {ID: 1, Addr: "10.1.0.2:10911"}}},
			{Cluster: "C", BrokerName: "b2", Perm: 6, ReadQueueNums: 8, WriteQueueNums: 8, Addrs: []routing.BrokerAddr{{ID: 0, Addr: "10.1.1.1:10911"}, {ID: 1, Addr: "10.1.1.2:10911"}}},
		}}
	}
	s.table.Apply("bench", routing.Update{Topic: topic, Route: route(6)})
	wire := &payloads{}
	streams := openStreams(b, ctx, s.addr, 1000, func(int) string { return topic }, wire)
	var bytes int
	perm := int32(6)
	var lat []time.Duration
	wire.mu.Lock()
	wireBefore := wire.wire
	wire.mu.Unlock()
	cpuBefore := cpuTime()
	for b.Loop() {
		perm = 10 - perm // 6 ↔ 4
		start := time.Now()
		s.table.Apply("bench", routing.Update{Topic: topic, Route: route(perm)})
		for _, st := range streams {
			resp := <-st.got
			bytes = proto.Size(resp)
		}
		lat = append(lat, time.Since(start))
	}
	cpu := cpuTime() - cpuBefore
	b.ReportMetric(float64(percentile(lat, 0.5).Microseconds())/1000, "all-streams-p50-ms")
	b.ReportMetric(float64(percentile(lat, 0.99).Microseconds())/1000, "all-streams-p99-ms")
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(len(lat)), "cpu-ms/change")
	wire.mu.Lock()
	wireBytes := wire.wire - wireBefore
	wire.mu.Unlock()
	b.ReportMetric(float64(bytes), "bytes/stream")
	b.ReportMetric(float64(wireBytes)/float64(len(lat)*len(streams)), "wire-bytes/stream")
}

// BenchmarkStreamHeap opens 1,000 delta streams, each subscribed to one route, and reports the heap they cost
// in this process (server and client sides together, so an upper bound for the server).
func BenchmarkStreamHeap(b *testing.B) {
	s := startStack(b, embedded.LoadDemo)
	topics := s.ns.Topics()
	for b.Loop() {
		ctx, cancel := context.WithCancel(context.Background())
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		streams := openStreams(b, ctx, s.addr, 1000, func(i int) string { return topics[i%len(topics)] }, nil)
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(len(streams)), "heapB/stream")
		runtime.KeepAlive(streams)
		cancel()
	}
}
