package controlplane_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/rocketpilot/rocketpilot/controlplane"
	"github.com/rocketpilot/rocketpilot/controlplane/controlplanetest"
	"github.com/rocketpilot/rocketpilot/nameserver/embedded"
	"github.com/rocketpilot/rocketpilot/nameserver/watcher"
	"github.com/rocketpilot/rocketpilot/remoting"
	"github.com/rocketpilot/rocketpilot/xds/server"
	"github.com/rocketpilot/rocketpilot/xds/sidecar"
)

// nameServerRequests is every request a watcher sends a NameServer, counted by the embedded NameServer.
func nameServerRequests(ns *embedded.NameServer) int64 {
	var n int64
	for _, code := range []int32{remoting.GetRouteInfoByTopic, remoting.GetBrokerClusterInfo, remoting.GetAllTopicListFromNameServer,
		remoting.GetTopicsByCluster} {
		n += ns.RequestCount(code)
	}
	return n
}

// rate is the NameServer's requests per second over a window.
func rate(ns *embedded.NameServer, window time.Duration) float64 {
	before := nameServerRequests(ns)
	time.Sleep(window)
	return float64(nameServerRequests(ns)-before) / window.Seconds()
}

// replica starts a control plane whose watchers poll ns every 100 ms, following the leader leader names (nil:
// leading).
func replica(t *testing.T, ns *embedded.NameServer, mode watcher.Mode, leader func() string) *controlplane.ControlPlane {
	t.Helper()
	cfg := controlplane.Config{
		Stack: server.StackConfig{Grace: time.Second},
		Sources: controlplane.SourcesConfig{NameServers: []string{ns.Addr()},
			Watch: watcher.Options{Mode: mode, RateLimit: 1e6, Interval: 100 * time.Millisecond, BrokerInterval: 100 * time.Millisecond}},
	}
	if leader != nil {
		cfg.Peer = controlplane.PeerConfig{Leader: leader, Dial: []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}}
	}
	cfg.Peer.Serve = true // every replica may lead
	return controlplanetest.Start(t, cfg)
}

// checker is a Go sidecar of one replica, resolving its topics.
type checker struct {
	name   string
	client *sidecar.Client
	topics []string
}

func newChecker(t *testing.T, name, addr string, topics []string) *checker {
	t.Helper()
	c, err := sidecar.Dial(addr, sidecar.Options{NodeID: name, MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &checker{name: name, client: c, topics: topics}
}

// queues is what a route says of its queues, one "broker:read/write/perm" per group, sorted.
func queues(data *remoting.TopicRouteData) string {
	var out []string
	for _, q := range data.QueueDatas {
		out = append(out, fmt.Sprintf("%s:%d/%d/%d", q.BrokerName, q.ReadQueueNums, q.WriteQueueNums, q.Perm))
	}
	slices.Sort(out)
	return strings.Join(out, ",")
}

// right waits until every checker resolves each of its topics as want says (topic → queues()).
func right(t *testing.T, what string, checkers []*checker, want func(topic string) string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for _, c := range checkers {
		for _, topic := range c.topics {
			for {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				data, err := c.client.Resolve(ctx, topic)
				cancel()
				got := ""
				if err == nil && data != nil {
					got = queues(data)
				}
				if got == want(topic) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: sidecar %s resolves %s as %q (%v), want %q", what, c.name, topic, got, err, want(topic))
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
}

// TestReplicasShareTheNameServerLoad runs three replicas, one polling the NameServer and two following it, with
// Go sidecars spread over them, in both discovery modes. Every sidecar resolves its topics as the NameServer has
// them, through changes; the NameServer's load with three replicas is within 1.25 times one replica's serving
// the same sidecars; the leader killed, the followers serve their last routes; one takes the lead, the other
// follows it, changes arrive again everywhere, and the load is still one replica's.
func TestReplicasShareTheNameServerLoad(t *testing.T) {
	for _, mode := range []watcher.Mode{watcher.ModeAllTopics, watcher.ModeInUse} {
		t.Run(string(mode), func(t *testing.T) { testReplicas(t, mode) })
	}
}

func testReplicas(t *testing.T, mode watcher.Mode) {
	ns := embedded.New(embedded.Options{})
	if err := ns.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	embedded.LoadDemo(ns)
	truth := map[string]string{}
	layout := func(topic string, q ...remoting.QueueData) {
		ns.SetTopic(topic, q...)
		data := &remoting.TopicRouteData{QueueDatas: q}
		truth[topic] = queues(data)
	}
	rw := func(group string, n int32) remoting.QueueData {
		return remoting.QueueData{BrokerName: group, ReadQueueNums: n, WriteQueueNums: n, Perm: remoting.PermRead | remoting.PermWrite}
	}
	sets := [][]string{{"r-orders", "r-shared"}, {"r-payments", "r-shared"}, {"r-audit", "r-shared"}}
	for _, topic := range []string{"r-orders", "r-payments", "r-audit", "r-shared"} {
		layout(topic, rw("broker-a", 4), rw("broker-b", 4))
	}
	want := func(topic string) string { return truth[topic] }

	// One replica serving the three sidecars: its load is the reference.
	lead := replica(t, ns, mode, nil)
	var alone []*checker
	for i, topics := range sets {
		alone = append(alone, newChecker(t, fmt.Sprintf("alone-%d", i), lead.Addr(), topics))
	}
	right(t, "one replica", alone, want)
	one := rate(ns, 2*time.Second)
	for _, c := range alone {
		c.client.Close()
	}

	// Three replicas, the same sidecars spread over them.
	var leader atomic.Value
	leader.Store(lead.Addr())
	leaderAddr := func() string { return leader.Load().(string) }
	followers := []*controlplane.ControlPlane{replica(t, ns, mode, leaderAddr), replica(t, ns, mode, leaderAddr)}
	replicas := append([]*controlplane.ControlPlane{lead}, followers...)
	var spread []*checker
	for i, topics := range sets {
		spread = append(spread, newChecker(t, fmt.Sprintf("spread-%d", i), replicas[i].Addr(), topics))
	}
	right(t, "three replicas", spread, want)
	layout("r-shared", rw("broker-a", 4), rw("broker-c", 2))
	layout("r-orders", rw("broker-b", 8))
	right(t, "a change, three replicas", spread, want)
	three := rate(ns, 2*time.Second)
	t.Logf("NameServer requests per second: one replica %.0f, three %.0f (%.2f×)", one, three, three/one)
	if three > 1.25*one {
		t.Fatalf("three replicas put %.0f requests per second on the NameServer, one %.0f: more than 1.25×", three, one)
	}
	for _, f := range followers {
		if st, ok := f.Follower(); !ok || !st.Connected || st.Leader != lead.Addr() {
			t.Fatalf("a follower's status: %+v (following: %v)", st, ok)
		}
	}

	// The leader killed: the followers serve what it last sent, and poll nothing.
	lead.Stop()
	right(t, "the leader gone", spread[1:], want)
	if r := rate(ns, time.Second); r > 0.1*one {
		t.Fatalf("with the leader gone and no replica leading, the NameServer still gets %.0f requests per second", r)
	}
	// One follower takes the lead, the other follows it.
	if err := followers[0].Lead(); err != nil {
		t.Fatal(err)
	}
	leader.Store(followers[0].Addr())
	layout("r-payments", rw("broker-c", 4))
	layout("r-shared", rw("broker-b", 4))
	right(t, "a change after the hand-over", spread[1:], want)
	after := rate(ns, 2*time.Second)
	t.Logf("after the hand-over: %.0f requests per second (%.2f× one replica's)", after, after/one)
	if after > 1.25*one {
		t.Fatalf("after the hand-over the NameServer gets %.0f requests per second, one replica %.0f", after, one)
	}
	if _, ok := followers[0].Follower(); ok {
		t.Fatal("the new leader still reports following")
	}
	if st, ok := followers[1].Follower(); !ok || !st.Connected || st.Leader != followers[0].Addr() {
		t.Fatalf("the remaining follower's status: %+v", st)
	}
}
