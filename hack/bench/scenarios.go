package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rocketpilot/rocketpilot/nameserver/embedded"
	"github.com/rocketpilot/rocketpilot/routing"
	"github.com/rocketpilot/rocketpilot/xds/sidecar"
)

// streamScenarios runs the on-demand, churn and reconnect scenarios with k open streams.
func streamScenarios(cfg config, k int, want func(string) bool, base baselineResult) []Figure {
	ns, cp, pool := startStreamStack(cfg, k)
	defer ns.Close()
	defer func() { cp.stop() }()
	serverPerStream := serverHeapPerStream(cp.addr, k, cfg.topicsPerStream, pool)
	// Printed now: a run at a scale the machine cannot finish (the in-process sidecars below hold both sides of
	// every stream) keeps this figure.
	log.Printf("%d streams, all synced, sidecars in another process: control-plane heap %.1f KiB per stream", k, serverPerStream/1024)
	if !want("ondemand") && !want("churn") && !want("reconnect") { // -only streamheap
		return []Figure{{at: &plotPoint{plot: plotHeapStreams, series: "control plane (sidecars in another process)", x: float64(k)},
			Name:  fmt.Sprintf("control-plane heap per open stream, %s streams, all synced (sidecars in another process)", human(k)),
			Value: round(serverPerStream/1024, 1), Unit: "KiB", Goal: "≤ 20 KiB at 100k", lowerIsBetter: true}}
	}

	// Even streams use "hot" topics (the first half of the pool), odd streams "cold" ones; churn changes hot
	// topics only, so odd streams must receive nothing while it runs.
	half := pool / 2
	topicsOf := func(i int) []string {
		out := make([]string, cfg.topicsPerStream)
		for j := range out {
			n := (i/2*cfg.topicsPerStream + j) % half
			if i%2 == 1 {
				n += half
			}
			out[j] = topicName(n)
		}
		return out
	}
	before := heapNow()
	sims := newSims(cp.addr, k, topicsOf)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	startSims(ctx, &wg, sims, "streams")
	perStream := heapGrowth(before, heapNow()) / float64(k)
	kk := human(k)
	perCoreGoal := ""
	if k == cfg.streams[len(cfg.streams)-1] {
		perCoreGoal = "≥ 2000" // the run's largest stream count is the claim
	}
	figs := []Figure{
		{Name: fmt.Sprintf("open streams held per core (all synced), %s streams", kk), Value: float64(k / runtime.NumCPU()),
			Unit: "", Goal: perCoreGoal},
		{at: &plotPoint{plot: plotHeapStreams, series: "control plane (sidecars in another process)", x: float64(k)},
			Name:  fmt.Sprintf("control-plane heap per open stream, %s streams (sidecars in another process)", kk),
			Value: round(serverPerStream/1024, 1), Unit: "KiB", Goal: "≤ 20 KiB at 100k", lowerIsBetter: true},
		{Name: fmt.Sprintf("heap per open stream, %s streams, sidecars in process (both sides)", kk),
			Value: round(perStream/1024, 1), Unit: "KiB", Baseline: base.forStreams(k, kib(base.heapPerNode)), lowerIsBetter: true},
	}

	if want("ondemand") {
		figs = append(figs, onDemand(cfg, cp.addr, kk, pool)...)
	}
	if want("churn") {
		figs = append(figs, churn(cfg, cp, sims, kk, half, base)...)
		figs = append(figs, brokerFlip(cp, sims, kk)...)
	}
	if want("reconnect") {
		figs = append(figs, reconnect(cp, ns, sims, kk, &cp, base.forStreams(k, seconds(base.coldPush)))...)
	}
	cancel()
	wg.Wait()
	return figs
}

// onDemand resolves topics nobody subscribed to yet, and names that do not exist, through the Go sidecar client.
func onDemand(cfg config, addr, kk string, pool int) []Figure {
	c, err := sidecar.Dial(addr, sidecar.Options{NodeID: "probe"})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	var resolve, unknown []time.Duration
	for i := range cfg.samples {
		t0 := time.Now()
		if _, err := c.Resolve(ctx, topicName(pool-1-i)); err != nil {
			log.Fatalf("resolve: %v", err)
		}
		resolve = append(resolve, time.Since(t0))
		t0 = time.Now()
		if _, err := c.Resolve(ctx, fmt.Sprintf("no-such-topic-%d", i)); !errors.Is(err, sidecar.ErrTopicNotFound) {
			log.Fatalf("unknown topic: %v", err)
		}
		unknown = append(unknown, time.Since(t0))
	}
	return []Figure{
		{Name: "on-demand resolve p50, " + kk + " streams open", Value: ms(pct(resolve, 0.5)), Unit: "ms", lowerIsBetter: true},
		{Name: "on-demand resolve p99, " + kk + " streams open", Value: ms(pct(resolve, 0.99)), Unit: "ms", Goal: "≤ 20 ms", lowerIsBetter: true},
		{Name: "unknown name answered p50, " + kk + " streams open", Value: ms(pct(unknown, 0.5)), Unit: "ms", lowerIsBetter: true},
		{Name: "unknown name answered p99, " + kk + " streams open", Value: ms(pct(unknown, 0.99)), Unit: "ms", Goal: "≤ 5 ms at 10k", lowerIsBetter: true},
	}
}

// churn changes hot topics at cfg.churnRate per second and measures change → delivery (the sims ACK at once),
// bytes per change per subscribed stream, bytes to streams that use none of the changed topics, and CPU.
func churn(cfg config, cp *controlPlane, sims []*sim, kk string, half int, base baselineResult) []Figure {
	var mu sync.Mutex
	changedAt := map[string]time.Time{}
	var lat []time.Duration
	subscribers := map[string]int{}
	for _, s := range sims {
		for _, t := range s.topics {
			subscribers[t]++
		}
		s.mu.Lock()
		s.onRoute = func(topic, _ string) {
			now := time.Now()
			mu.Lock()
			if t0, ok := changedAt[topic]; ok {
				lat = append(lat, now.Sub(t0))
			}
			mu.Unlock()
		}
		s.mu.Unlock()
	}
	// Only hot topics that some stream uses are changed.
	var hot []string
	for t, n := range subscribers {
		if n > 0 && t < topicName(half) {
			hot = append(hot, t)
		}
	}
	slices.Sort(hot)
	bytesBefore := make([]int64, len(sims))
	routeBefore := make([]int64, len(sims))
	wireBefore := make([]int64, len(sims))
	for i, s := range sims {
		bytesBefore[i] = s.bytes.Load()
		routeBefore[i] = s.routeBytes.Load()
		wireBefore[i] = s.wire.Load()
	}
	var ru0, ru1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	changes, deliveries := 0, 0
	tick := time.NewTicker(time.Duration(float64(time.Second) / cfg.churnRate))
	end := time.Now().Add(cfg.churnFor)
	for time.Now().Before(end) {
		<-tick.C
		t := hot[changes%len(hot)]
		perm := int32(4 + 2*((changes/len(hot))%2)) // read-only, then read-write again on the next round
		mu.Lock()
		changedAt[t] = time.Now()
		mu.Unlock()
		cp.table.Apply("bench", routing.Update{Topic: t, Route: &routing.Route{Members: []routing.Member{{
			Cluster: "cluster-0", BrokerName: "broker-churn", Perm: perm, ReadQueueNums: 4, WriteQueueNums: 4,
			Addrs: []routing.BrokerAddr{{ID: 0, Addr: "10.9.9.1:10911"}}}}}})
		changes++
		deliveries += subscribers[t]
	}
	tick.Stop()
	time.Sleep(time.Second) // let the last changes land
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	var hotBytes, hotRouteBytes, hotWire, coldBytes int64
	for i, s := range sims {
		d := s.bytes.Load() - bytesBefore[i]
		if i%2 == 0 {
			hotBytes += d
			hotRouteBytes += s.routeBytes.Load() - routeBefore[i]
			hotWire += s.wire.Load() - wireBefore[i]
		} else {
			coldBytes += s.wire.Load() - wireBefore[i]
		}
	}
	cpu := time.Duration(ru1.Utime.Nano()+ru1.Stime.Nano()-ru0.Utime.Nano()-ru0.Stime.Nano()) / time.Duration(max(changes, 1))
	mu.Lock()
	got := len(lat)
	p50, p99 := pct(lat, 0.5), pct(lat, 0.99)
	mu.Unlock()
	log.Printf("churn: %d changes, %d/%d deliveries, p99 %v", changes, got, deliveries, p99)
	perDelivery := func(b int64) float64 { return round(float64(b)/float64(max(deliveries, 1)), 0) }
	return []Figure{
		{Name: "change → ACK p50, " + kk + " streams", Value: ms(p50), Unit: "ms", lowerIsBetter: true},
		{Name: "change → ACK p99, " + kk + " streams", Value: ms(p99), Unit: "ms", Goal: "≤ 1000 ms at 100k", Baseline: base.changeP99, lowerIsBetter: true},
		{Name: "changes delivered to subscribed streams, " + kk + " streams", Value: float64(got), Unit: fmt.Sprintf("of %d", deliveries)},
		{at: &plotPoint{plot: plotBytes, series: "rocketpilot, on the wire (gzip)", x: float64(len(sims))},
			Name: "bytes sent per change per subscribed stream (on the wire, gzip), " + kk + " streams", Value: perDelivery(hotWire), Unit: "B", Goal: "≤ 2048 B", lowerIsBetter: true},
		{at: &plotPoint{plot: plotBytes, series: "rocketpilot, protobuf", x: float64(len(sims)), baseline: "one cluster per topic to every node (go-control-plane), protobuf"},
			Name: "  the same responses as protobuf (uncompressed), " + kk + " streams", Value: perDelivery(hotBytes), Unit: "B", Baseline: base.bytesPerChange, lowerIsBetter: true},
		{Name: "  of which the route itself, " + kk + " streams", Value: perDelivery(hotRouteBytes), Unit: "B", lowerIsBetter: true},
		{Name: "  of which endpoints of broker sets new to the stream, " + kk + " streams", Value: perDelivery(hotBytes - hotRouteBytes), Unit: "B", lowerIsBetter: true},
		{Name: "bytes to unsubscribed streams during churn, " + kk + " streams", Value: float64(coldBytes), Unit: "B", Goal: "0 B", lowerIsBetter: true},
		{Name: "CPU per change (whole process: server and simulated sidecars), " + kk + " streams", Value: ms(cpu), Unit: "ms", lowerIsBetter: true},
	}
}

// reconnect kills the control plane under the open streams and starts a new one on the same address, which syncs
// from the NameServer again before it serves; it measures the time until every stream has its whole world again.
func reconnect(cp *controlPlane, ns *embedded.NameServer, sims []*sim, kk string, cpp **controlPlane, base *float64) []Figure {
	streamsBefore := make([]int, len(sims))
	for i, s := range sims {
		s.mu.Lock()
		streamsBefore[i] = s.streams
		s.mu.Unlock()
	}
	bad := int64(0)
	for _, s := range sims {
		bad += s.badWorlds.Load()
	}
	addr := cp.addr
	start := time.Now()
	cp.stop()
	next, _ := startControlPlane(ns.Addr(), addr)
	*cpp = next
	for i, s := range sims { // every sim is on a new stream...
		for {
			s.mu.Lock()
			n := s.streams
			s.mu.Unlock()
			if n > streamsBefore[i] {
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
	ok := waitSynced(sims, 5*time.Minute) // ...and has its whole world on it
	took := time.Since(start)
	if !ok {
		log.Printf("reconnect: not every stream resynced within 5 minutes")
	}
	for _, s := range sims {
		bad -= s.badWorlds.Load()
	}
	log.Printf("reconnect: %d streams resynced in %v", len(sims), took.Round(time.Millisecond))
	return []Figure{
		{Name: "resync after a control-plane restart, " + kk + " streams", Value: round(took.Seconds(), 2), Unit: "s", Goal: "≤ 120 s for 100k",
			Baseline: base, lowerIsBetter: true},
		{Name: "empty or partial worlds seen by streams during the restart, " + kk + " streams", Value: float64(-bad), Unit: "", Goal: "0", lowerIsBetter: true},
	}
}

func kib(b *float64) *float64 {
	if b == nil {
		return nil
	}
	return ptr(round(*b/1024, 1))
}

func seconds(d time.Duration) *float64 {
	if d == 0 {
		return nil
	}
	return ptr(round(d.Seconds(), 2))
}

func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	d = slices.Clone(d)
	slices.Sort(d)
	return d[min(len(d)-1, int(float64(len(d))*p))]
}

func ms(d time.Duration) float64 { return round(float64(d.Microseconds())/1000, 2) }

// brokerFlip makes one broker group read-only for every topic on it at once, as a broker perm change does, and
// measures the bytes each subscribed stream receives per changed topic: many topics move to a few new broker
// sets, so a stream receives each new cluster's endpoints once for all its topics on it.
func brokerFlip(cp *controlPlane, sims []*sim, kk string) []Figure {
	const broker = "broker-0"
	var updates []routing.Update
	cp.table.Range(func(t *routing.Topic) bool {
		if t.BrokerSet.Member(broker) == nil {
			return true
		}
		members := slices.Clone(t.BrokerSet.Members)
		for i := range members {
			if members[i].BrokerName == broker {
				members[i].Perm = routing.PermRead
			}
		}
		updates = append(updates, routing.Update{Topic: t.Name, Route: &routing.Route{Members: members}})
		return true
	})
	changed := map[string]bool{}
	for _, u := range updates {
		changed[u.Topic] = true
	}
	deliveries := 0
	subscribed := make([]bool, len(sims))
	for i, s := range sims {
		for _, t := range s.topics {
			if changed[t] {
				deliveries++
				subscribed[i] = true
			}
		}
	}
	var received sync.WaitGroup
	received.Add(deliveries)
	var left atomic.Int64
	left.Store(int64(deliveries))
	before := make([]int64, len(sims))
	wireBefore := make([]int64, len(sims))
	for i, s := range sims {
		before[i] = s.bytes.Load()
		wireBefore[i] = s.wire.Load()
		s.mu.Lock()
		s.onRoute = func(topic, _ string) {
			if changed[topic] && left.Add(-1) >= 0 {
				received.Done()
			}
		}
		s.mu.Unlock()
	}
	if dir := os.Getenv("BENCH_FLIP_CPUPROFILE"); dir != "" { // where the flip's time goes
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("flip-%d-streams.pprof", len(sims))))
		if err == nil && pprof.StartCPUProfile(f) == nil {
			defer func() { pprof.StopCPUProfile(); f.Close() }()
		}
	}
	start := time.Now()
	cp.table.Apply("bench", updates...)
	done := make(chan struct{})
	go func() { received.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		log.Printf("broker flip: not every change arrived within 60 s")
	}
	took := time.Since(start)
	time.Sleep(500 * time.Millisecond) // endpoints of new clusters follow the routes
	var bytes, wire int64
	for i, s := range sims {
		if subscribed[i] {
			bytes += s.bytes.Load() - before[i]
			wire += s.wire.Load() - wireBefore[i]
		}
	}
	log.Printf("broker flip: %d topics changed, %d deliveries in %v", len(updates), deliveries, took.Round(time.Millisecond))
	return []Figure{
		{Name: fmt.Sprintf("broker perm change (%s topics at once): bytes sent per changed topic per subscribed stream (wire), %s streams",
			human(len(updates)), kk), Value: round(float64(wire)/float64(max(deliveries, 1)), 0), Unit: "B", Goal: "≤ 2048 B", lowerIsBetter: true},
		{Name: fmt.Sprintf("  the same as protobuf (uncompressed), %s streams", kk),
			Value: round(float64(bytes)/float64(max(deliveries, 1)), 0), Unit: "B", lowerIsBetter: true},
		{Name: fmt.Sprintf("broker perm change (%s topics at once): until every subscribed stream has it, %s streams", human(len(updates)), kk),
			Value: ms(took), Unit: "ms", Goal: "≤ 1000 ms", lowerIsBetter: true},
	}
}
