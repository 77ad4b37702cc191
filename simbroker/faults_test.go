package simbroker

import (
	"testing"
	"time"

	"github.com/rocketpilot/rocketpilot/nameserver/embedded"
	"github.com/rocketpilot/rocketpilot/remoting"
)

// startNameServer starts an embedded NameServer that checks for expired brokers every 10 ms.
func startNameServer(t *testing.T) *embedded.NameServer {
	t.Helper()
	ns := embedded.New(embedded.Options{Addr: "127.0.0.1:0", ScanInterval: 10 * time.Millisecond})
	if err := ns.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}

// routedTo reports whether the NameServer routes topic to the broker group, at the broker's address.
func routedTo(ns *embedded.NameServer, topic string, b *Broker) bool {
	r, ok := ns.Route(topic)
	if !ok {
		return false
	}
	for _, bd := range r.BrokerDatas {
		if bd.BrokerName == b.Name() && bd.BrokerAddrs[b.ID()] == b.Addr() {
			return true
		}
	}
	return false
}

// within polls cond every 5 ms for up to d and returns how long it took to hold, or fails the test.
func within(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

// A broker registers before Start returns; a stopped one unregisters and leaves the NameServer's answers at once,
// a killed one (no goodbye, its connection silent) when its heartbeat timeout has passed; restarted, either is
// routed again at the same address.
func TestStopKillRestart(t *testing.T) {
	ns := startNameServer(t)
	const timeout, interval = 300 * time.Millisecond, 50 * time.Millisecond
	b := startBroker(t, Options{Topics: []remoting.TopicConfig{topicConfig("T", 2)}, NameServers: []string{ns.Addr()},
		RegisterInterval: interval, HeartbeatTimeout: timeout})
	addr := b.Addr()
	if !routedTo(ns, "T", b) {
		t.Fatalf("T is not routed to the broker once Start returned: %+v", ns.ClusterInfo())
	}

	b.Stop()
	within(t, time.Second, "a stopped broker leaves the NameServer", func() bool { return ns.LiveBrokers() == 0 })
	if _, ok := ns.Route("T"); ok {
		t.Fatal("T is still routed after its only broker stopped")
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	if b.Addr() != addr || !routedTo(ns, "T", b) {
		t.Fatalf("restarted at %s (was %s), routed %v", b.Addr(), addr, routedTo(ns, "T", b))
	}

	killed := time.Now()
	b.Kill()
	time.Sleep(timeout / 6) // a closed connection would have removed it by now
	if !routedTo(ns, "T", b) {
		t.Fatalf("a killed broker left the NameServer after %v, before its heartbeat timeout %v", time.Since(killed), timeout)
	}
	within(t, 3*timeout, "a killed broker expires", func() bool { return !routedTo(ns, "T", b) })
	// The timeout runs from the last registration, at most one interval before the kill.
	if gone, least := time.Since(killed), timeout-interval; gone < least {
		t.Fatalf("a killed broker expired after %v, before its heartbeat timeout %v less one interval", gone, timeout)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	if b.Addr() != addr || !routedTo(ns, "T", b) {
		t.Fatalf("restarted after a kill at %s (was %s), routed %v", b.Addr(), addr, routedTo(ns, "T", b))
	}
	rc := dial(t, b.Addr())
	if r := sendV2(rc, "T", 0, "after the restart", nil); r.Code != remoting.Success {
		t.Fatalf("send after the restart: %d %s", r.Code, r.Remark)
	}
}

// SetPerm reaches the NameServer at once; SetLatency delays every answer.
func TestPermAndLatencyHooks(t *testing.T) {
	ns := startNameServer(t)
	b := startBroker(t, Options{Topics: []remoting.TopicConfig{topicConfig("T", 2)}, NameServers: []string{ns.Addr()}})
	if err := b.SetPerm("T", remoting.PermRead); err != nil {
		t.Fatal(err)
	}
	within(t, time.Second, "the read-only perm reaches the NameServer", func() bool {
		r, ok := ns.Route("T")
		return ok && len(r.QueueDatas) == 1 && r.QueueDatas[0].Perm == remoting.PermRead
	})
	rc := dial(t, b.Addr())
	if r := sendV2(rc, "T", 0, "x", nil); r.Code != remoting.NoPermission {
		t.Fatalf("send to a read-only topic: %d %s", r.Code, r.Remark)
	}
	if err := b.SetPerm("nope", remoting.PermRead); err == nil {
		t.Fatal("SetPerm of an unknown topic succeeded")
	}

	const slow = 150 * time.Millisecond
	b.SetLatency(slow)
	start := time.Now()
	rc.call(remoting.GetMaxOffset, map[string]string{"topic": "T", "queueId": "0"}, nil)
	if d := time.Since(start); d < slow {
		t.Fatalf("an answer of a slow broker took %v, less than its latency %v", d, slow)
	}
	b.SetLatency(0)
}

// The demo's order configuration names each group with the ordered topic's queue count, as the demo is sized.
func TestDemoOrderConf(t *testing.T) {
	for _, c := range []struct {
		groups int
		queues int32
		want   string
	}{{2, 0, "broker-a:8;broker-b:8"}, {1, 0, "broker-a:8"}, {3, 4, "broker-a:4;broker-b:4;broker-c:4"}} {
		if got := DemoOrderConf(c.groups, c.queues); got != c.want {
			t.Errorf("DemoOrderConf(%d, %d) = %q, want %q", c.groups, c.queues, got, c.want)
		}
	}
}
