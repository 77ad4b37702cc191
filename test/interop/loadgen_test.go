package interop

import (
	"bytes"
	"context"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rocketpilot/rocketpilot/nameserver/client"
	"github.com/rocketpilot/rocketpilot/remoting"
	"github.com/rocketpilot/rocketpilot/remoting/message"
)

// loadGen is an open-loop RocketMQ send load generator, the data plane's equivalent of Envoy's Nighthawk: it
// finds a topic's writable broker groups through a NameServer address (105), opens one connection to each, and
// writes SEND_MESSAGE_V2 requests of 1 KiB to their queues in turn from one goroutine, while one reader per
// connection matches the answers by opaque. A client library costs latency of its own (rocketmq-client-go starts
// two goroutines per async send and writes under a per-connection mutex, which at half its saturation rate gives a
// p99 of tens of milliseconds on this machine, direct): this measures the path, not the client.
type loadGen struct {
	topic  string
	conns  []net.Conn
	queues []genQueue // every writable queue, visited in turn
	body   []byte

	// Per request, indexed by opaque: when it was due (open loop), as time since start, and how long until its
	// answer. Atomics: the reader learns of a request through the network, which the race detector cannot see.
	start  time.Time
	due    []atomic.Int64
	lat    []time.Duration
	failed atomic.Int64
	answered
}

type genQueue struct {
	conn  int
	group string
	id    int
	// frame is a request to the queue, encoded once; a request is a copy with its own digits at keyAt (its
	// UNIQ_KEY, 16 hexadecimal digits) and opaqueAt (its id, 10 decimal digits from opaqueBase).
	frame           []byte
	keyAt, opaqueAt int
}

// opaqueBase is the id of request 0: ids of one width keep every request's frame the same length.
const opaqueBase = 1_000_000_000

// answered counts answers; done is closed at the expected count.
type answered struct {
	n      atomic.Int64
	want   int64
	done   chan struct{}
	window chan struct{} // closed-loop mode: a slot per request in flight
}

// newLoadGen resolves topic through nameServer and connects to every writable group's master.
func newLoadGen(t testing.TB, nameServer, topic string) *loadGen {
	t.Helper()
	ns := client.New(nameServer, client.Options{})
	defer ns.Close()
	route, _, err := ns.GetRouteInfo(context.Background(), topic)
	if err != nil {
		t.Fatalf("route of %s through %s: %v", topic, nameServer, err)
	}
	g := &loadGen{topic: topic, body: benchBody()}
	for _, q := range route.QueueDatas {
		if q.Perm&remoting.PermWrite == 0 {
			continue
		}
		var addr string
		for _, bd := range route.BrokerDatas {
			if bd.BrokerName == q.BrokerName {
				addr = bd.BrokerAddrs[0]
			}
		}
		if addr == "" {
			t.Fatalf("route of %s names no master of %s", topic, q.BrokerName)
		}
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		for id := range int(q.WriteQueueNums) {
			g.queues = append(g.queues, g.template(t, genQueue{conn: len(g.conns), group: q.BrokerName, id: id}))
		}
		g.conns = append(g.conns, nc)
	}
	if len(g.queues) == 0 {
		t.Fatalf("route of %s has no writable queue", topic)
	}
	return g
}

// run sends n requests, due every interval from now (0: as fast as the window of inFlight allows), and waits for
// every answer. Latency is counted from when a request was due, so a generator that falls behind counts its own
// lateness rather than hiding it (no coordinated omission).
func (g *loadGen) run(t testing.TB, n int, interval time.Duration, inFlight int) time.Duration {
	t.Helper()
	g.due, g.lat = make([]atomic.Int64, n), make([]time.Duration, n)
	g.failed.Store(0)
	g.answered = answered{want: int64(n), done: make(chan struct{})}
	if inFlight > 0 {
		g.window = make(chan struct{}, inFlight)
	}
	var readers sync.WaitGroup
	for _, nc := range g.conns {
		readers.Add(1)
		go func() { defer readers.Done(); g.read(nc) }()
	}
	g.start = time.Now()
	frame := make([]byte, 0, 2048)
	for i := range n {
		due := time.Duration(i) * interval
		if wait := due - time.Since(g.start); wait > 0 {
			time.Sleep(wait) // about 1 ms at least on Linux: a burst then catches up, as real arrivals come
		}
		if g.window != nil {
			g.window <- struct{}{}
			due = time.Since(g.start)
		}
		g.due[i].Store(int64(due))
		q := &g.queues[i%len(g.queues)]
		frame = q.request(frame[:0], i)
		if _, err := g.conns[q.conn].Write(frame); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	select {
	case <-g.done:
	case <-time.After(time.Minute):
		t.Fatalf("%d of %d sends answered", g.n.Load(), n)
	}
	elapsed := time.Since(g.start)
	for _, nc := range g.conns {
		_ = nc.SetReadDeadline(time.Now()) // ends the readers
	}
	readers.Wait()
	for _, nc := range g.conns {
		_ = nc.SetReadDeadline(time.Time{})
	}
	if f := g.failed.Load(); f > 0 {
		t.Fatalf("%d of %d sends failed", f, n)
	}
	return elapsed
}

// template encodes q's request frame, as rocketmq-client-go would send it, and finds where its digits go.
func (g *loadGen) template(t testing.TB, q genQueue) genQueue {
	const key = "LOADGEN0000000000000000"
	props := message.EncodeProperties(map[string]string{"UNIQ_KEY": key, "WAIT": "true"})
	cmd := remoting.NewRequest(remoting.SendMessageV2, map[string]string{"a": "loadgen", "b": g.topic, "c": "TBW102",
		"d": "4", "e": strconv.Itoa(q.id), "f": "0", "g": strconv.FormatInt(time.Now().UnixMilli(), 10), "h": "0",
		"i": props, "j": "0", "k": "false", "m": "false"})
	cmd.Opaque, cmd.Body = opaqueBase, g.body
	frame, err := remoting.Encode(cmd)
	if err != nil {
		t.Fatal(err)
	}
	q.frame = frame
	q.keyAt = bytes.Index(frame, []byte(key)) + len("LOADGEN")
	q.opaqueAt = bytes.Index(frame, []byte(`"opaque":`+strconv.Itoa(opaqueBase))) + len(`"opaque":`)
	if q.keyAt < len("LOADGEN") || q.opaqueAt < len(`"opaque":`) {
		t.Fatalf("request template %q", frame)
	}
	return q
}

// request is request i's frame, appended to dst.
func (q *genQueue) request(dst []byte, i int) []byte {
	dst = append(dst, q.frame...)
	const hex = "0123456789ABCDEF"
	for d, n := q.keyAt+15, uint64(i); d >= q.keyAt; d, n = d-1, n>>4 {
		dst[d] = hex[n&15]
	}
	for d, n := q.opaqueAt+9, opaqueBase+i; d >= q.opaqueAt; d, n = d-1, n/10 {
		dst[d] = byte('0' + n%10)
	}
	return dst
}

func (g *loadGen) read(nc net.Conn) {
	r := remoting.NewReader(nc, remoting.DefaultMaxFrameSize)
	var buf []byte
	for {
		raw, err := r.ReadRaw(buf)
		if err != nil {
			return
		}
		buf = raw[:0]
		var cmd remoting.Command
		if err := remoting.DecodePartialInto(&cmd, raw[4:], remoting.Nothing); err != nil { // the code and the id
			return
		}
		i := int(cmd.Opaque) - opaqueBase
		if !cmd.IsResponse() || i < 0 || i >= len(g.lat) {
			continue
		}
		g.lat[i] = time.Since(g.start) - time.Duration(g.due[i].Load())
		if cmd.Code != remoting.Success {
			g.failed.Add(1)
		}
		if g.window != nil {
			<-g.window
		}
		if g.n.Add(1) == g.want {
			close(g.done)
		}
	}
}
