package main

import (
	"context"
	"fmt"
	"log"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"time"

	"github.com/rocketpilot/rocketpilot/controlplane"
	"github.com/rocketpilot/rocketpilot/nameserver/client"
	"github.com/rocketpilot/rocketpilot/nameserver/embedded"
	"github.com/rocketpilot/rocketpilot/nameserver/watcher"
	"github.com/rocketpilot/rocketpilot/remoting"
	"github.com/rocketpilot/rocketpilot/routing"
	"github.com/rocketpilot/rocketpilot/xds/server"
)

const brokerGroups = 8

// topicName names the i-th topic of the workload.
func topicName(i int) string { return fmt.Sprintf("topic-%07d", i) }

// loadNameServer registers brokerGroups groups (master and slave) in two clusters and spreads n topics over
// `shapes` route shapes: many topics, few shapes, as in real deployments.
func loadNameServer(ns *embedded.NameServer, n, shapes int) {
	for g := range brokerGroups {
		ns.RegisterBroker(embedded.Broker{Cluster: fmt.Sprintf("cluster-%d", g%2), Name: fmt.Sprintf("broker-%d", g),
			Addrs: map[int64]string{0: fmt.Sprintf("10.0.%d.1:10911", g), 1: fmt.Sprintf("10.0.%d.2:10911", g)}})
	}
	q := func(g int) remoting.QueueData {
		return remoting.QueueData{BrokerName: fmt.Sprintf("broker-%d", g%brokerGroups), ReadQueueNums: 8, WriteQueueNums: 8, Perm: 6}
	}
	names := make([]string, n)
	for i := range names {
		names[i] = topicName(i)
	}
	for s := range shapes {
		var batch []string
		for i := s; i < n; i += shapes {
			batch = append(batch, names[i])
		}
		ns.SetTopics(batch, q(s), q(s+1+s/brokerGroups))
	}
}

// startStreamStack starts the embedded NameServer with the topics the scenarios of k streams draw from
// (cfg.topicsPerStream a stream, 10k at least) and a control plane synced from it.
func startStreamStack(cfg config, k int) (ns *embedded.NameServer, cp *controlPlane, pool int) {
	pool = max(k*cfg.topicsPerStream, 10_000)
	ns = embedded.New(embedded.Options{})
	loadNameServer(ns, pool, cfg.shapes)
	if err := ns.Start(); err != nil {
		log.Fatal(err)
	}
	cp, _ = startControlPlane(ns.Addr(), "")
	return ns, cp, pool
}

// controlPlane is rocketpilot in process: the control-plane assembly (the NameServer's watcher → table → cache →
// gRPC server).
type controlPlane struct {
	*controlplane.ControlPlane
	table  *routing.Table
	addr   string
	cancel context.CancelFunc
}

// startControlPlane syncs from the NameServer and serves xDS on addr ("" picks a port). It returns once the
// first sync is applied and xDS is served, with how long that took.
func startControlPlane(nsAddr, addr string) (*controlPlane, time.Duration) {
	return startControlPlaneWith(nsAddr, addr, "")
}

// startControlPlaneWith is startControlPlane with the xDS server's response compression (--xds-compression:
// "gzip", "none"; "" is the default, gzip).
func startControlPlaneWith(nsAddr, addr, compression string) (*controlPlane, time.Duration) {
	start := time.Now()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var lis net.Listener
	var err error
	for try := 0; ; try++ { // after a restart the old listener's port may take a moment to free
		if lis, err = net.Listen("tcp", addr); err == nil || try == 100 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	xds := serveControlPlane(ctx, controlplane.Config{
		Stack: server.StackConfig{Listener: lis, Server: server.Options{MaxStreams: 100_000, Compression: compression}},
		Sources: controlplane.SourcesConfig{
			NameServers: []string{nsAddr},
			Watch: watcher.Options{
				Interval:       time.Hour, // no steady-state polling inside the measurements
				BrokerInterval: time.Hour,
				Concurrency:    64,
				RateLimit:      1e9,
				Client:         client.Options{RequestTimeout: 30 * time.Second},
			},
		},
	})
	took := time.Since(start)
	cp := &controlPlane{ControlPlane: xds, table: xds.Table(), addr: xds.Addr(), cancel: cancel}
	return cp, took
}

// serveControlPlane builds a control plane, starts it, waits for its first sync and serves xDS; any failure ends
// the bench.
func serveControlPlane(ctx context.Context, cfg controlplane.Config) *controlplane.ControlPlane {
	xds, err := controlplane.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	if err := xds.Start(ctx); err != nil {
		log.Fatal(err)
	}
	if err := xds.Sync(ctx); err != nil {
		log.Fatal(err)
	}
	xds.Serve()
	if err := xds.WaitReady(ctx); err != nil {
		log.Fatal(err)
	}
	return xds
}

// stop kills the control plane abruptly, as a crash or a rolling restart would (no grace for open streams).
func (cp *controlPlane) stop() {
	cp.cancel()
	cp.Stop()
}

// heapNow is the live heap once it has settled: collected until it stops shrinking (for at most a second), so
// that what an earlier scenario is still tearing down (servers, streams winding down) is not counted as a
// difference of the next one.
func heapNow() uint64 {
	read := func() uint64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	last := read()
	for range 20 {
		time.Sleep(50 * time.Millisecond)
		now := read()
		if now >= last-last/100 { // within 1%: settled
			return min(now, last)
		}
		last = now
	}
	return last
}

// heapGrowth is after - before, as a signed number: a heap that shrank is a measurement to see, not a wrap-around.
func heapGrowth(before, after uint64) float64 { return float64(int64(after) - int64(before)) }

// coldSync measures, for each N, the time from an empty control plane to a complete, served model, and the heap
// the control plane holds per topic (the embedded NameServer's own memory excluded).
func coldSync(cfg config, base baselineResult) []Figure {
	var figs []Figure
	for _, n := range cfg.coldTopics {
		ns := embedded.New(embedded.Options{})
		loadNameServer(ns, n, cfg.shapes)
		if err := ns.Start(); err != nil {
			log.Fatal(err)
		}
		before := heapNow()
		cp, took := startControlPlane(ns.Addr(), "")
		if topics, _ := cp.table.Stats(); topics != n {
			log.Fatalf("cold sync of %d topics learned %d", n, topics)
		}
		perTopic := heapGrowth(before, heapNow()) / float64(n)
		log.Printf("cold sync: %d topics in %v, %.0f B heap per topic", n, took.Round(time.Millisecond), perTopic)
		writeHeapProfile(fmt.Sprintf("heap-%d-topics.pprof", n))
		figs = append(figs,
			Figure{Name: fmt.Sprintf("cold sync, %s topics", human(n)), Value: round(took.Seconds(), 2), Unit: "s",
				Goal: goalFor(n, "≤ 150 s for 10M"), lowerIsBetter: true},
			Figure{at: &plotPoint{plot: plotHeapTopics, series: "rocketpilot", x: float64(n)},
				Name: fmt.Sprintf("control-plane heap per topic, %s topics", human(n)), Value: round(perTopic, 0), Unit: "B",
				Goal: "≤ 300 B at 10M", Baseline: base.forTopics(n, base.heapPerTopic), lowerIsBetter: true})
		cp.stop()
		ns.Close()
	}
	return figs
}

func goalFor(n int, goal string) string {
	if n >= 1_000_000 {
		return goal
	}
	return ""
}

func human(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n >= 1_000 && n%1_000 == 0:
		return fmt.Sprintf("%dk", n/1_000)
	}
	return fmt.Sprint(n)
}

func round(v float64, digits int) float64 {
	p := 1.0
	for range digits {
		p *= 10
	}
	return float64(int64(v*p+0.5)) / p
}

// writeHeapProfile writes the process's heap profile to name in BENCH_HEAP_PROFILES, when it names a directory.
func writeHeapProfile(name string) {
	dir := os.Getenv("BENCH_HEAP_PROFILES")
	if dir == "" {
		return
	}
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		log.Printf("heap profile: %v", err)
		return
	}
	defer f.Close()
	_ = pprof.WriteHeapProfile(f)
}
