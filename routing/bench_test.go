package routing

import (
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"
)

// benchShapes are eight route shapes over nine broker groups.
func benchShapes() []*Route {
	shapes := make([]*Route, 8)
	for i := range shapes {
		shapes[i] = route(
			member("c1", fmt.Sprintf("broker-%d", i), 6, 8, fmt.Sprintf("10.0.%d.1:10911", i), fmt.Sprintf("10.0.%d.2:10911", i)),
			member("c1", fmt.Sprintf("broker-%d", i+1), 6, 8, fmt.Sprintf("10.0.%d.1:10911", i+1)))
	}
	return shapes
}

// benchTable is a table of n topics, topic-0000000 and on, over the shapes in turn.
func benchTable(n int, shapes []*Route) *Table {
	tab := NewTable()
	batch := make([]Update, 0, 10_000)
	for i := range n {
		batch = append(batch, Update{fmt.Sprintf("topic-%07d", i), shapes[i%len(shapes)]})
		if len(batch) == cap(batch) {
			tab.Apply("ns", batch...)
			batch = batch[:0]
		}
	}
	tab.Apply("ns", batch...)
	return tab
}

// BenchmarkApplyOneTopic changes one topic's route in tables of growing size: the cost must not grow with N.
func BenchmarkApplyOneTopic(b *testing.B) {
	shapes := benchShapes()
	for _, n := range []int{1_000, 100_000, 1_000_000} {
		tab := benchTable(n, shapes)
		sub := tab.Subscribe()
		b.Run(fmt.Sprintf("topics=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				tab.Apply("ns", Update{fmt.Sprintf("topic-%07d", i%n), shapes[(i+1)%len(shapes)]})
				sub.TryNext()
				i++
			}
		})
		sub.Close()
	}
}

// BenchmarkSetPolicies changes one of ten prefix policies, each matching a tenth of a table of 100k or 1M topics:
// the cost of one TopicRoute change. Every topic's match is evaluated; only the changed policy's topics merge again.
func BenchmarkSetPolicies(b *testing.B) {
	shapes := benchShapes()
	for _, n := range []int{100_000, 1_000_000} {
		tab := benchTable(n, shapes)
		policies := make([]Policy, 10)
		for i := range policies {
			// Each prefix covers a tenth of the names: "topic-0" plus one digit at 1M topics, "topic-00" plus one at 100k.
			name := fmt.Sprintf("topic-%07d", i*n/10)
			prefix := name[:len(name)-len(fmt.Sprint(n-1))+1]
			policies[i] = Policy{Name: fmt.Sprintf("ns/p%d", i), Version: "1", Match: TopicMatch{Prefix: []string{prefix}}}
		}
		b.Run(fmt.Sprintf("topics=%d", n), func(b *testing.B) {
			// A reader beside it: the longest a point read of the table waits while policies change.
			stop := make(chan struct{})
			var worst time.Duration
			var wg sync.WaitGroup
			wg.Go(func() {
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					t0 := time.Now()
					tab.Topic(fmt.Sprintf("topic-%07d", i%n))
					worst = max(worst, time.Since(t0))
				}
			})
			drain, version := []string{"broker-1"}, "2"
			for b.Loop() {
				// p0 toggles its drain (a new version): a tenth of the topics change, the others keep their policy.
				policies[0].Drain, drain = drain, policies[0].Drain
				policies[0].Version, version = version, policies[0].Version
				tab.SetPolicies(policies)
			}
			close(stop)
			wg.Wait()
			b.ReportMetric(float64(worst.Microseconds())/1000, "max-read-wait-ms")
		})
	}
}

// BenchmarkTableHeap fills a table with n topics over eight shapes and reports the heap it holds per topic (the
// live heap after a collection, before against after): the model's share of the control plane's heap per topic.
// Run it alone (-bench TableHeap -benchtime 1x): other benchmarks' tables would be in the figure.
func BenchmarkTableHeap(b *testing.B) {
	shapes := benchShapes()
	for _, n := range []int{1_000_000, 10_000_000} {
		b.Run(fmt.Sprintf("topics=%d", n), func(b *testing.B) {
			var perTopic float64
			for b.Loop() {
				before := liveHeap()
				tab := benchTable(n, shapes)
				perTopic = float64(int64(liveHeap())-int64(before)) / float64(n)
				runtime.KeepAlive(tab)
			}
			b.ReportMetric(perTopic, "heapB/topic")
		})
	}
}

// liveHeap is the heap in use after a full collection.
func liveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkTopicsUsingGroups finds the topics of one changed broker group, as the watcher does when a NameServer's
// broker table (106) changes, in tables of 1M and 10M topics over the eight shapes, with one topic in 400 moved to
// a shape of its own group: broker-0 serves an eighth of the topics, broker-rare one in 400 (25,000 at 10M).
// "walk" is how the watcher found them before the table indexed its broker sets' topics: a pass over every topic
// (a copy of its code); "index" is TopicsUsingGroups.
func BenchmarkTopicsUsingGroups(b *testing.B) {
	shapes := benchShapes()
	rare := route(member("c1", "broker-rare", 6, 8, "10.0.9.1:10911"))
	for _, n := range []int{1_000_000, 10_000_000} {
		tab := benchTable(n, shapes)
		batch := make([]Update, 0, n/400)
		for i := 0; i < n; i += 400 {
			batch = append(batch, Update{fmt.Sprintf("topic-%07d", i+1), rare}) // i+1: not a broker-0 topic
		}
		tab.Apply("ns", batch...)
		for _, group := range []string{"broker-0", "broker-rare"} {
			want := n / 8
			if group == "broker-rare" {
				want = n / 400
			}
			for _, how := range []string{"walk", "index"} {
				b.Run(fmt.Sprintf("topics=%d/group=%s/%s", n, group, how), func(b *testing.B) {
					var found []string
					for b.Loop() {
						if how == "walk" {
							found = walkUsing(tab, map[string]bool{group: true})
						} else {
							found = tab.TopicsUsingGroups([]string{group})
						}
					}
					if len(found) != want {
						b.Fatalf("found %d topics, want %d", len(found), want)
					}
					b.ReportMetric(float64(len(found)), "topics-found")
				})
			}
		}
		runtime.KeepAlive(tab)
	}
}

// walkUsing is the watcher's former requeueUsing, without the queueing: every topic of the table, each broker set
// looked at once.
func walkUsing(tab *Table, brokers map[string]bool) []string {
	uses := map[*BrokerSet]bool{}
	var names []string
	tab.Range(func(t *Topic) bool {
		use, ok := uses[t.BrokerSet]
		if !ok {
			for _, m := range t.BrokerSet.Members {
				use = use || brokers[m.BrokerName]
			}
			uses[t.BrokerSet] = use
		}
		if use {
			names = append(names, t.Name)
		}
		return true
	})
	return names
}
