package watcher

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/rocketpilot/rocketpilot/nameserver/client"
	"github.com/rocketpilot/rocketpilot/nameserver/embedded"
	"github.com/rocketpilot/rocketpilot/routing"
)

// loadShapes registers 8 broker groups in two clusters and spreads n topics over 16 route shapes, as a real
// deployment does: many topics, few shapes.
func loadShapes(ns *embedded.NameServer, n int) {
	for g := range 8 {
		ns.RegisterBroker(brokerGroup(fmt.Sprintf("c%d", g%2), fmt.Sprintf("broker-%d", g), 10+2*g))
	}
	for i := range n {
		s := i % 16
		ns.SetTopic(fmt.Sprintf("topic-%07d", i),
			queues(fmt.Sprintf("broker-%d", s%8), 6, 8),
			queues(fmt.Sprintf("broker-%d", (s+1+s/8)%8), 6, 8))
	}
}

// BenchmarkFullSync measures a cold sync of 100k topics from the embedded NameServer over loopback: time to a
// complete model, allocations, and the heap the model and the watcher hold per topic afterwards.
func BenchmarkFullSync(b *testing.B) {
	const topics = 100_000
	ns := embedded.New(embedded.Options{})
	loadShapes(ns, topics)
	if err := ns.Start(); err != nil {
		b.Fatal(err)
	}
	defer ns.Close()
	b.ReportAllocs()
	var heapPerTopic float64
	for b.Loop() {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		table := routing.NewTable()
		w, err := New(table, Options{
			Addrs:       []string{ns.Addr()},
			Interval:    time.Hour, // one cold sync, no steady-state polling inside the measurement
			Concurrency: 64,
			RateLimit:   1e9,
			Client:      client.Options{RequestTimeout: 10 * time.Second},
		})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { w.Run(ctx); close(done) }()
		<-w.Synced()
		if n, _ := table.Stats(); n != topics {
			b.Fatalf("synced %d topics, want %d", n, topics)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		heapPerTopic = float64(after.HeapAlloc-before.HeapAlloc) / topics
		runtime.KeepAlive(w)
		runtime.KeepAlive(table)
		cancel()
		<-done
	}
	b.ReportMetric(heapPerTopic, "heapB/topic")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/topics, "ns/topic")
}
