package interop

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"

	"github.com/rocketpilot/rocketpilot/dataplane"
	"github.com/rocketpilot/rocketpilot/remoting"
	"github.com/rocketpilot/rocketpilot/simbroker"
	"github.com/rocketpilot/rocketpilot/xds/sidecar"
)

// The broker benchmarks measure what the official Go client gets from the simulated demo brokers over loopback
// TCP, through the embedded NameServer they registered with: messages per second for produce and consume, with
// 1 KiB bodies: "direct" through the embedded NameServer to the brokers, and "sidecar" with a Go sidecar (package
// dataplane, following a control plane over xDS) as the only address the client is given: the same client, the
// same brokers, one hop more. Run them with `make bench-broker`.

const benchBodySize = 1024

func benchBody() []byte {
	b := make([]byte, benchBodySize)
	for i := range b {
		b[i] = byte('a' + i%26)
	}
	return b
}

// reportRate reports n messages in d as msgs/s (MB/s of bodies comes from SetBytes).
func reportRate(b *testing.B, n int, d time.Duration) {
	b.ReportMetric(float64(n)/d.Seconds(), "msgs/s")
}

// reportLatency reports the median and 99th percentile of send latencies, in µs.
func reportLatency(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkGoClientProduce sends b.N messages of 1 KiB to TopicTest's 8 queues on broker-a and broker-b:
// synchronously from one goroutine (one request in flight: the round-trip time), from 16 goroutines, with
// SendAsync and 64 in flight, and in batches of 32 (SEND_BATCH_MESSAGE).
func BenchmarkGoClientProduce(b *testing.B) {
	c := startSimCluster(b)
	b.Run("direct", func(b *testing.B) { benchProduce(b, c.ns.Addr()) })
	b.Run("sidecar", func(b *testing.B) { benchProduce(b, startSidecar(b, c)) })
}

func benchProduce(b *testing.B, nameServer string) {
	body := benchBody()
	msg := func() *primitive.Message { return primitive.NewMessage(goTopic, body) }
	ctx := context.Background()
	check := func(res *primitive.SendResult, err error) {
		if err != nil || res.Status != primitive.SendOK {
			b.Fatalf("send: %v %v", res, err)
		}
	}

	b.Run("sync/1", func(b *testing.B) {
		p := startGoProducer(b, nameServer)
		b.SetBytes(benchBodySize)
		lat := make([]time.Duration, 0, b.N)
		b.ResetTimer()
		start := time.Now()
		for range b.N {
			t0 := time.Now()
			check(p.SendSync(ctx, msg()))
			lat = append(lat, time.Since(t0))
		}
		reportRate(b, b.N, time.Since(start))
		reportLatency(b, lat)
	})
	b.Run("sync/16", func(b *testing.B) {
		p := startGoProducer(b, nameServer)
		b.SetBytes(benchBodySize)
		var left atomic.Int64
		left.Store(int64(b.N))
		var wg sync.WaitGroup
		lats := make([][]time.Duration, 16)
		b.ResetTimer()
		start := time.Now()
		for g := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for left.Add(-1) >= 0 {
					t0 := time.Now()
					res, err := p.SendSync(ctx, msg())
					if err != nil || res.Status != primitive.SendOK {
						b.Errorf("send: %v %v", res, err)
						return
					}
					lats[g] = append(lats[g], time.Since(t0))
				}
			}()
		}
		wg.Wait()
		reportRate(b, b.N, time.Since(start))
		reportLatency(b, slices.Concat(lats...))
	})
	b.Run("async/64", func(b *testing.B) {
		p := startGoProducer(b, nameServer)
		b.SetBytes(benchBodySize)
		inflight := make(chan struct{}, 64)
		var wg sync.WaitGroup
		var failed atomic.Int64
		b.ResetTimer()
		start := time.Now()
		for range b.N {
			inflight <- struct{}{}
			wg.Add(1)
			err := p.SendAsync(ctx, func(_ context.Context, res *primitive.SendResult, err error) {
				if err != nil || res.Status != primitive.SendOK {
					failed.Add(1)
				}
				<-inflight
				wg.Done()
			}, msg())
			if err != nil {
				b.Fatal(err)
			}
		}
		wg.Wait()
		reportRate(b, b.N, time.Since(start))
		if n := failed.Load(); n > 0 {
			b.Fatalf("%d async sends failed", n)
		}
	})
	b.Run("batch/32", func(b *testing.B) {
		p := startGoProducer(b, nameServer)
		b.SetBytes(benchBodySize)
		b.ResetTimer()
		start := time.Now()
		for sent := 0; sent < b.N; {
			n := min(32, b.N-sent)
			msgs := make([]*primitive.Message, n)
			for i := range msgs {
				msgs[i] = msg()
			}
			check(p.SendSync(ctx, msgs...))
			sent += n
		}
		reportRate(b, b.N, time.Since(start))
	})
}

// BenchmarkGoClientConsume fills TopicTest with b.N messages of 1 KiB (untimed), then times a clustering push
// consumer of a new group from its start until it has received every one.
func BenchmarkGoClientConsume(b *testing.B) {
	c := startSimCluster(b)
	b.Run("direct", func(b *testing.B) { benchConsume(b, c.ns.Addr()) })
	b.Run("sidecar", func(b *testing.B) { benchConsume(b, startSidecar(b, c)) })
}

func benchConsume(b *testing.B, nameServer string) {
	fillTopic(b, nameServer)
	count := newConsumeCounter(b.N)
	b.SetBytes(benchBodySize)
	b.ResetTimer()
	start := time.Now()
	pc := startBenchConsumer(b, nameServer, uniqueName("bench-consume"), count)
	count.wait(b)
	reportRate(b, b.N, time.Since(start))
	b.StopTimer()
	pc.stop()
}

// fillTopic sends b.N messages of 1 KiB to TopicTest, in batches of 64.
func fillTopic(b *testing.B, nameServer string) {
	p := startGoProducer(b, nameServer)
	body := benchBody()
	for sent := 0; sent < b.N; {
		n := min(64, b.N-sent)
		msgs := make([]*primitive.Message, n)
		for i := range msgs {
			msgs[i] = primitive.NewMessage(goTopic, body)
		}
		if res, err := p.SendSync(context.Background(), msgs...); err != nil || res.Status != primitive.SendOK {
			b.Fatalf("fill: %v %v", res, err)
		}
		sent += n
	}
}

// consumeCounter counts what push consumers received, until n. Its callback holds no *testing.B: the client's
// goroutines outlive Shutdown, and a B holds every fixture of its run.
type consumeCounter struct {
	n    int64
	work time.Duration // slept per message: the consumer's own work
	got  atomic.Int64
	once sync.Once
	done chan struct{}
}

func newConsumeCounter(n int) *consumeCounter {
	return &consumeCounter{n: int64(n), done: make(chan struct{})}
}

func (c *consumeCounter) consume(_ context.Context, msgs ...*primitive.MessageExt) (consumer.ConsumeResult, error) {
	if c.work > 0 {
		time.Sleep(c.work * time.Duration(len(msgs)))
	}
	if c.got.Add(int64(len(msgs))) >= c.n {
		c.once.Do(func() { close(c.done) })
	}
	return consumer.ConsumeSuccess, nil
}

// wait fails the benchmark unless every message arrives within a bound that grows with their number.
func (c *consumeCounter) wait(b *testing.B) {
	select {
	case <-c.done:
	case <-time.After(time.Minute + time.Duration(c.n)*time.Millisecond):
		b.Fatalf("consumed %d of %d messages", c.got.Load(), c.n)
	}
}

// startBenchConsumer starts a push consumer of group on TopicTest that counts into count, pulling 32 at a time.
func startBenchConsumer(b *testing.B, nameServer, group string, count *consumeCounter, opts ...consumer.Option) *goPushConsumer {
	return startPushConsumer(b, nameServer, group, goTopic, consumer.MessageSelector{Type: consumer.TAG, Expression: "*"},
		count.consume, append([]consumer.Option{consumer.WithPullBatchSize(32), consumer.WithConsumeMessageBatchMaxSize(32)}, opts...)...)
}

// BenchmarkGoClientLatencyAtHalfRate measures send latency where it matters for a data plane, below saturation:
// the direct saturation rate is measured first (async, 64 in flight, untimed), then b.N async sends are paced at
// half of it, straight to the brokers and through a sidecar, each timed from SendAsync to its callback.
func BenchmarkGoClientLatencyAtHalfRate(b *testing.B) {
	c := startSimCluster(b)
	rate := saturationRate(b, c.ns.Addr()) / 2
	b.Run("direct", func(b *testing.B) { benchAtRate(b, c.ns.Addr(), rate) })
	b.Run("sidecar", func(b *testing.B) { benchAtRate(b, startSidecar(b, c), rate) })
}

// saturationRate is the messages per second of 5,000 async sends of 1 KiB with 64 in flight.
func saturationRate(b *testing.B, nameServer string) float64 {
	body := benchBody()
	p := startGoProducer(b, nameServer)
	const probe = 5000
	inflight := make(chan struct{}, 64)
	var wg sync.WaitGroup
	start := time.Now()
	for range probe {
		inflight <- struct{}{}
		wg.Add(1)
		if err := p.SendAsync(context.Background(), func(context.Context, *primitive.SendResult, error) { <-inflight; wg.Done() },
			primitive.NewMessage(goTopic, body)); err != nil {
			b.Fatal(err)
		}
	}
	wg.Wait()
	return float64(probe) / time.Since(start).Seconds()
}

// benchAtRate paces b.N async sends of 1 KiB at rate per second, after 200 synchronous ones that resolve the
// route and open the connections, and reports the latency of each from SendAsync to its callback.
func benchAtRate(b *testing.B, nameServer string, rate float64) {
	body := benchBody()
	ctx := context.Background()
	p := startGoProducer(b, nameServer)
	for range 200 {
		if res, err := p.SendSync(ctx, primitive.NewMessage(goTopic, body)); err != nil || res.Status != primitive.SendOK {
			b.Fatalf("warm-up send: %v %v", res, err)
		}
	}
	interval := time.Duration(float64(time.Second) / rate)
	lat := make([]time.Duration, b.N)
	var wg sync.WaitGroup
	var failed atomic.Int64
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
			time.Sleep(wait)
		}
		wg.Add(1)
		t0 := time.Now()
		if err := p.SendAsync(ctx, func(_ context.Context, res *primitive.SendResult, err error) {
			lat[i] = time.Since(t0)
			if err != nil || res.Status != primitive.SendOK {
				failed.Add(1)
			}
			wg.Done()
		}, primitive.NewMessage(goTopic, body)); err != nil {
			b.Fatal(err)
		}
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	reportLatency(b, lat)
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d sends failed", n)
	}
}

// BenchmarkGoClientConsumeModes times the same push consumers, each member through a sidecar of its own, in
// classic and in Pop mode: b.N messages of 1 KiB are sent first (untimed), then the members of a new group start and
// are timed until the group has received every one. Each run has a cluster of its own. The cases: TopicTest's 8
// queues with 2 members, and 2 queues with 3 members (in classic mode one member holds no queue), with consumers
// that cost nothing, and with consumers whose work bounds them: one message at a time, 200 µs each.
func BenchmarkGoClientConsumeModes(b *testing.B) {
	for _, shape := range []struct {
		name    string
		queues  int32 // per broker group (2 groups)
		members int
		work    time.Duration // per message, in one consuming goroutine per member; 0: none, the client's 20
	}{{"8queues-2members", 4, 2, 0}, {"2queues-3members", 1, 3, 0}, {"2queues-3members-200us", 1, 3, 200 * time.Microsecond}} {
		for _, mode := range []string{"classic", "pop"} {
			b.Run(shape.name+"/"+mode, func(b *testing.B) { benchConsumeMode(b, shape.queues, shape.members, shape.work, mode == "pop") })
		}
	}
}

func benchConsumeMode(b *testing.B, queues int32, members int, work time.Duration, pop bool) {
	c := startSimClusterWith(b, simbroker.DemoOptions{Queues: queues})
	group := uniqueName("bench-consume-mode")
	var policies map[string]string
	if pop {
		policies = popRule(group, time.Minute)
	}
	xdsAddr := startControlPlaneFor(b, c, policies)
	sidecars := make([]*dataplane.Proxy, members)
	for i := range sidecars {
		var xc *sidecar.Client
		sidecars[i], xc = startSidecarOf(b, xdsAddr)
		if pop && !waitFor(10*time.Second, func() bool {
			r, err := xc.Route(b.Context(), goTopic)
			return err == nil && r.Pop[group].InvisibleTime > 0
		}) {
			b.Fatal("the sidecar never held the Pop rule")
		}
	}
	fillTopic(b, c.ns.Addr())
	count := newConsumeCounter(b.N)
	count.work = work
	b.SetBytes(benchBodySize)
	b.ResetTimer()
	start := time.Now()
	for _, s := range sidecars {
		if work > 0 {
			startBenchConsumer(b, s.Addr(), group, count, consumer.WithConsumeGoroutineNums(1))
		} else {
			startBenchConsumer(b, s.Addr(), group, count)
		}
	}
	count.wait(b)
	reportRate(b, b.N, time.Since(start))
	b.StopTimer()
	if pop {
		var popped int64
		for _, s := range sidecars {
			for _, st := range s.PopStats() {
				popped += st.Popped
			}
		}
		b.ReportMetric(float64(popped)/float64(b.N), "popped/msg")
		var pops int64
		for _, br := range c.demo.Brokers {
			pops += br.RequestCount(remoting.PopMessage)
		}
		b.ReportMetric(float64(b.N)/float64(pops), "msgs/pop")
	}
}
