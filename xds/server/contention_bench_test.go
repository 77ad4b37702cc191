package server

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"

	"github.com/rocketpilot/rocketpilot/routing"
	"github.com/rocketpilot/rocketpilot/xds/cache"
	"github.com/rocketpilot/rocketpilot/xds/translate"
)

// contentionTopics is the size of the table BenchmarkRequestLatencyDuringAdminList serves.
const contentionTopics = 1_000_000

// probeInterval is how often BenchmarkRequestLatencyDuringAdminList's probe sends a request.
const probeInterval = 2 * time.Millisecond

func contentionTopic(i int) string { return fmt.Sprintf("topic-%07d", i) }

// contentionShapes are eight route shapes over nine broker groups, as in routing's benchmarks.
func contentionShapes() []*routing.Route {
	shapes := make([]*routing.Route, 8)
	for i := range shapes {
		shapes[i] = &routing.Route{Members: []routing.Member{
			{Cluster: "C", BrokerName: fmt.Sprintf("broker-%d", i), Perm: 6, ReadQueueNums: 8, WriteQueueNums: 8,
				Addrs: []routing.BrokerAddr{{ID: 0, Addr: fmt.Sprintf("10.0.%d.1:10911", i)}, {ID: 1, Addr: fmt.Sprintf("10.0.%d.2:10911", i)}}},
			{Cluster: "C", BrokerName: fmt.Sprintf("broker-%d", i+1), Perm: 6, ReadQueueNums: 8, WriteQueueNums: 8,
				Addrs: []routing.BrokerAddr{{ID: 0, Addr: fmt.Sprintf("10.0.%d.1:10911", i+1)}}},
		}}
	}
	return shapes
}

// BenchmarkRequestLatencyDuringAdminList measures on-demand xDS requests against a table of 1,000,000 topics
// while a writer applies one topic change every 2 ms, with and without a client listing topics through the admin
// API (GET /api/v1/topics?limit=1000, back to back). 100 delta streams stay open. Each iteration is one request,
// due every 2 ms: a stream subscribes to the route of a topic no stream uses yet, unsubscribing the previous one,
// and waits for it (the cache materialises the route from the table on demand). Reported: the requests' p50, p99
// and max, a late one timed from when it was due; the longest write (Apply, its wait for the table's lock
// included); the admin list's mean time and rate.
func BenchmarkRequestLatencyDuringAdminList(b *testing.B) {
	shapes := contentionShapes()
	table := routing.NewTable()
	batch := make([]routing.Update, 0, 10_000)
	for i := range contentionTopics {
		batch = append(batch, routing.Update{Topic: contentionTopic(i), Route: shapes[i%len(shapes)]})
		if len(batch) == cap(batch) {
			table.Apply("ns", batch...)
			batch = batch[:0]
		}
	}
	table.Apply("ns", batch...)

	c, addr := serveCache(b, table, cache.Options{}, Options{}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	// Streams use topics 500, 1500, …; the writer changes 0, 1000, …; probes take the others.
	openStreams(b, ctx, addr, 100, func(i int) string { return contentionTopic(i*1000 + 500) }, nil)
	admin := httptest.NewServer((&Admin{Table: table, Cache: c}).Handler())
	b.Cleanup(admin.Close)

	next := 0 // the probes' topics, distinct across sub-benchmarks
	for _, mode := range []string{"admin=none", "admin=topics"} {
		b.Run(mode, func(b *testing.B) {
			probe := openStreams(b, ctx, addr, 1, func(int) string { return contentionTopic(500) }, nil)[0]
			runtime.GC() // the setup's garbage, collected before the clock starts
			stop := make(chan struct{})
			var wg sync.WaitGroup
			stopAll := sync.OnceFunc(func() { close(stop); wg.Wait() })
			defer stopAll()
			// The writer: one topic's route changes every 2 ms, as a NameServer poll's answers arrive.
			var writeWait atomic.Int64
			wg.Go(func() {
				tick := time.NewTicker(2 * time.Millisecond)
				defer tick.Stop()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					case <-tick.C:
					}
					start := time.Now()
					table.Apply("ns", routing.Update{Topic: contentionTopic(i % 1000 * 1000), Route: shapes[(i/1000+i+1)%len(shapes)]})
					if d := int64(time.Since(start)); d > writeWait.Load() {
						writeWait.Store(d)
					}
				}
			})
			var lists, listTime atomic.Int64
			if mode == "admin=topics" {
				wg.Go(func() {
					for {
						select {
						case <-stop:
							return
						default:
						}
						start := time.Now()
						resp, err := http.Get(admin.URL + "/api/v1/topics?limit=1000")
						if err != nil {
							b.Error(err)
							return
						}
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode != http.StatusOK {
							b.Errorf("admin list: %s", resp.Status)
							return
						}
						lists.Add(1)
						listTime.Add(int64(time.Since(start)))
					}
				})
			}
			// Requests leave on a schedule, one every probeInterval, and a late one is timed from when it was due:
			// a request held up delays those due after it, as it would delay other sidecars' (a probe that only
			// sent when the previous answer came would count a one-second stall once).
			var lat []time.Duration
			held := contentionTopic(500)
			began := time.Now()
			for i := 0; b.Loop(); i++ {
				next++
				idx := next * 7919 % contentionTopics
				for ; idx%1000 == 0 || idx%1000 == 500; idx = next * 7919 % contentionTopics {
					next++
				}
				name := contentionTopic(idx)
				start := began.Add(time.Duration(i) * probeInterval) // when it is due
				if wait := time.Until(start); wait > 0 {
					time.Sleep(wait)
					start = time.Now() // on time: timed from now, not from the timer's own lateness
				}
				// The probe holds one name at a time: the previous one goes in the same request, so that its cost
				// does not grow with the run.
				probe.send(&discovery.DeltaDiscoveryRequest{TypeUrl: translate.RouteType,
					ResourceNamesSubscribe: []string{name}, ResourceNamesUnsubscribe: []string{held}})
				if !awaitRoute(probe, name) {
					b.Fatalf("no answer for %s", name)
				}
				lat = append(lat, time.Since(start))
				held = name
			}
			stopAll()
			elapsed := time.Since(began)
			b.ReportMetric(float64(percentile(lat, 0.5).Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(percentile(lat, 0.99).Microseconds())/1000, "p99-ms")
			b.ReportMetric(float64(percentile(lat, 1).Microseconds())/1000, "max-ms")
			b.ReportMetric(float64(time.Duration(writeWait.Load()).Microseconds())/1000, "write-max-ms")
			if n := lists.Load(); n > 0 {
				b.ReportMetric(float64(time.Duration(listTime.Load()/n).Microseconds())/1000, "list-ms")
				b.ReportMetric(float64(n)/elapsed.Seconds(), "lists/s")
			}
		})
	}
}

// awaitRoute reads a stream's responses until one carries the route of name (pushes of other names may come first).
func awaitRoute(s *benchStream, name string) bool {
	timeout := time.After(30 * time.Second)
	for {
		select {
		case resp, ok := <-s.got:
			if !ok {
				return false
			}
			for _, r := range resp.Resources {
				if r.Name == name {
					return true
				}
			}
		case <-timeout:
			return false
		}
	}
}
