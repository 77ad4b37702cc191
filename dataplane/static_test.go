package dataplane

import (
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rocketpilot/rocketpilot/remoting"
	"github.com/rocketpilot/rocketpilot/remoting/message"
	"github.com/rocketpilot/rocketpilot/xds/sidecar"
	"github.com/rocketpilot/rocketpilot/xds/translate"
)

// fakeBroker is a loopback server that records the requests it receives and, when push is set, sends it to the
// application (with id 77) on receiving its first request.
type fakeBroker struct {
	ln       net.Listener
	received chan *remoting.Command
	count    atomic.Int64
}

func startFakeBroker(t *testing.T, push *remoting.Command, answer bool) *fakeBroker {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeBroker{ln: ln, received: make(chan *remoting.Command, 64)}
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer nc.Close()
				r := remoting.NewReader(nc, 0)
				pushed := false
				for {
					cmd, err := r.Read()
					if err != nil {
						return
					}
					f.count.Add(1)
					f.received <- cmd
					if push != nil && !pushed {
						pushed = true
						b, _ := remoting.Encode(push)
						nc.Write(b)
					}
					if answer && !cmd.IsResponse() && !cmd.IsOneway() {
						b, _ := remoting.Encode(&remoting.Command{Code: remoting.Success, Opaque: cmd.Opaque, Flag: remoting.FlagResponse})
						nc.Write(b)
					}
				}
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return f
}

// startStaticProxy starts a proxy serving one fixed route for every topic, its groups learned.
func startStaticProxy(t *testing.T, r *sidecar.Route) *Proxy {
	t.Helper()
	p := New(Options{Listen: "127.0.0.1:0", Routes: staticRoutes{r}})
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	if _, err := p.learn(r.Data); err != nil {
		t.Fatal(err)
	}
	return p
}

func twoGroups(a, b string) *remoting.TopicRouteData {
	return &remoting.TopicRouteData{
		QueueDatas: []remoting.QueueData{{BrokerName: "broker-a", ReadQueueNums: 2, WriteQueueNums: 2, Perm: 6},
			{BrokerName: "broker-b", ReadQueueNums: 2, WriteQueueNums: 2, Perm: 6}},
		BrokerDatas: []remoting.BrokerData{{Cluster: "c", BrokerName: "broker-a", BrokerAddrs: map[int64]string{0: a}},
			{Cluster: "c", BrokerName: "broker-b", BrokerAddrs: map[int64]string{0: b}}}}
}

func oneway(t *testing.T, code int32, ext map[string]string) []byte {
	t.Helper()
	req := remoting.NewRequest(code, ext)
	req.Flag = remoting.FlagOneway
	b, err := remoting.Encode(req)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Requests held while a burst is read still go on when a bad frame ends the burst and the connection.
func TestHeldRequestsSurviveABadFrame(t *testing.T) {
	fa := startFakeBroker(t, nil, false)
	p := startStaticProxy(t, &sidecar.Route{Data: twoGroups(fa.ln.Addr().String(), fa.ln.Addr().String())})
	nc, err := net.Dial("tcp", p.GroupAddr("broker-a"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	burst := append(oneway(t, remoting.HeartBeat, nil), oneway(t, remoting.UnregisterClient, map[string]string{"clientID": "c"})...)
	burst = append(burst, 0, 0, 0, 8, 9, 0, 0, 4, 0xff, 0xff, 0xff, 0xff) // garbage
	if _, err := nc.Write(burst); err != nil {
		t.Fatal(err)
	}
	for want := range 2 {
		select {
		case <-fa.received:
		case <-time.After(5 * time.Second):
			t.Fatalf("the broker received %d of the 2 one-way requests before the bad frame", want)
		}
	}
}

// An ordered topic's send whose group is not writable is refused, not moved to another group's queue.
func TestOrderedSendIsNotMoved(t *testing.T) {
	fa := startFakeBroker(t, nil, true)
	data := twoGroups(fa.ln.Addr().String(), fa.ln.Addr().String())
	data.OrderTopicConf = "broker-a:2;broker-b:2"
	p := startStaticProxy(t, &sidecar.Route{Data: data, Send: []translate.Target{{BrokerName: "broker-a", Addr: fa.ln.Addr().String()}}})
	b := dial(t, p.GroupAddr("broker-b")) // broker-b is drained: not among the send targets
	if r := send(b, "T", 1, "ordered"); r.Code != remoting.NoPermission {
		t.Fatalf("ordered send to a drained group: %d %s", r.Code, r.Remark)
	}
	if n := fa.count.Load(); n != 0 {
		t.Fatalf("the ordered send reached a broker (%d requests)", n)
	}
	a := dial(t, p.GroupAddr("broker-a"))
	if r := send(a, "T", 1, "ordered"); r.Code != remoting.Success {
		t.Fatalf("ordered send to its writable group: %d %s", r.Code, r.Remark)
	}
	if got := <-fa.received; got.Ext("e") != "1" {
		t.Fatalf("the ordered send's queue changed: %v", got.ExtFields)
	}
}

// An id the application reuses while the first request with it is in flight is counted once: Drain still ends.
func TestReusedIDIsCountedOnce(t *testing.T) {
	fa := startFakeBroker(t, nil, true)
	p := startStaticProxy(t, &sidecar.Route{Data: twoGroups(fa.ln.Addr().String(), fa.ln.Addr().String())})
	nc, err := net.Dial("tcp", p.GroupAddr("broker-a"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	req := remoting.NewRequest(remoting.GetMaxOffset, map[string]string{"topic": "T", "queueId": "0"})
	req.Opaque = 9
	f, _ := remoting.Encode(req)
	nc.Write(append(append([]byte{}, f...), f...))
	r := remoting.NewReader(nc, 0)
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.Read(); err != nil { // the broker answers both; the first answer ends the id
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for p.inflight.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d requests in flight after both were answered", p.inflight.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Requests two brokers push with the same id (GET_CONSUMER_RUNNING_INFO, 307, id 77) on one application
// connection reach it with ids of the proxy's, and each answer goes back to its own broker as 77.
func TestBrokerRequestsAreAnsweredToTheirBroker(t *testing.T) {
	push := remoting.NewRequest(remoting.GetConsumerRunningInfo, map[string]string{"consumerGroup": "cg", "clientId": "c1"})
	push.Opaque = 77
	fa, fb := startFakeBroker(t, push, false), startFakeBroker(t, push, false)
	p := startStaticProxy(t, &sidecar.Route{Data: twoGroups(fa.ln.Addr().String(), fb.ln.Addr().String())})
	app := dial(t, p.GroupAddr("broker-a"))
	// One connection reaches both: a heartbeat to its group, and a Pop ack whose handle names broker-b.
	app.nc.Write(oneway(t, remoting.HeartBeat, nil))
	handle := message.ExtraInfo{PopTime: 1, InvisibleTime: 1000, BrokerName: "broker-b"}.String()
	app.nc.Write(oneway(t, remoting.AckMessage, map[string]string{"consumerGroup": "g", "topic": "T", "queueId": "0",
		"extraInfo": handle, "offset": "0"}))
	ids := map[int32]bool{}
	for range 2 {
		select {
		case req := <-app.pushed:
			if req.Code != remoting.GetConsumerRunningInfo || ids[req.Opaque] {
				t.Fatalf("pushed %v (ids so far %v): two brokers' 77 must not collide", req, ids)
			}
			ids[req.Opaque] = true
			resp := &remoting.Command{Code: remoting.Success, Opaque: req.Opaque, Flag: remoting.FlagResponse, Body: []byte(strconv.Itoa(int(req.Opaque)))}
			b, _ := remoting.Encode(resp)
			app.nc.Write(b)
		case <-time.After(5 * time.Second):
			t.Fatalf("%d of the 2 brokers' requests reached the application", len(ids))
		}
	}
	for name, f := range map[string]*fakeBroker{"broker-a": fa, "broker-b": fb} {
		deadline := time.After(5 * time.Second)
		for answered := false; !answered; {
			select {
			case got := <-f.received:
				if !got.IsResponse() {
					continue // the request that made it push
				}
				if got.Opaque != 77 {
					t.Fatalf("%s received its answer as id %d, want 77", name, got.Opaque)
				}
				answered = true
			case <-deadline:
				t.Fatalf("%s received no answer", name)
			}
		}
	}
}

// countingRoutes is staticRoutes that counts watches, their cancels and forgotten topics.
type countingRoutes struct {
	staticRoutes
	watches, cancels, forgets atomic.Int64
}

func (c *countingRoutes) Watch(string, func(*remoting.TopicRouteData, error)) func() {
	c.watches.Add(1)
	return func() { c.cancels.Add(1) }
}

func (c *countingRoutes) Forget(string) { c.forgets.Add(1) }

// A topic is watched once however many first lookups race, and a route no request used for RouteIdle is dropped
// with its watch and its xDS subscription.
func TestRoutesWatchedOnceAndEvictedWhenIdle(t *testing.T) {
	fa := startFakeBroker(t, nil, true)
	routes := &countingRoutes{staticRoutes: staticRoutes{&sidecar.Route{Data: twoGroups(fa.ln.Addr().String(), fa.ln.Addr().String())}}}
	p := New(Options{Listen: "127.0.0.1:0", Routes: routes, RouteIdle: 200 * time.Millisecond})
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			if _, err := p.route("T"); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := routes.watches.Load(); n != 1 {
		t.Fatalf("%d watches of one topic", n)
	}
	deadline := time.Now().Add(5 * time.Second)
	for routes.forgets.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("an idle route was never evicted")
		}
		time.Sleep(10 * time.Millisecond)
	}
	p.mu.Lock()
	held, watched := len(p.routes), len(p.watches)
	p.mu.Unlock()
	if held != 0 || watched != 0 || routes.cancels.Load() != 1 {
		t.Fatalf("after eviction: %d routes, %d watches, %d cancels", held, watched, routes.cancels.Load())
	}
	if _, err := p.route("T"); err != nil || routes.watches.Load() != 2 {
		t.Fatalf("a route used again is watched again: %v, %d watches", err, routes.watches.Load())
	}
}
