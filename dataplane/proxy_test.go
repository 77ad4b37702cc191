package dataplane

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rocketpilot/rocketpilot/controlplane"
	"github.com/rocketpilot/rocketpilot/controlplane/controlplanetest"
	"github.com/rocketpilot/rocketpilot/internal/leakcheck"
	"github.com/rocketpilot/rocketpilot/internal/promtest"
	"github.com/rocketpilot/rocketpilot/internal/testutil"
	"github.com/rocketpilot/rocketpilot/nameserver/embedded"
	"github.com/rocketpilot/rocketpilot/nameserver/watcher"
	"github.com/rocketpilot/rocketpilot/remoting"
	"github.com/rocketpilot/rocketpilot/remoting/message"
	"github.com/rocketpilot/rocketpilot/simbroker"
	"github.com/rocketpilot/rocketpilot/xds/server"
	"github.com/rocketpilot/rocketpilot/xds/sidecar"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// mesh is the whole path on loopback: the demo's simulated brokers registered with an embedded NameServer, a
// control plane watching it (with the TopicRoutes of a config directory), a sidecar's xDS client and its proxy.
type mesh struct {
	ns    *embedded.NameServer
	demo  *simbroker.Demo
	dir   string
	proxy *Proxy
	cp    *controlplane.ControlPlane
	xc    *sidecar.Client
}

func startMesh(t *testing.T, policies map[string]string, tune ...func(*Options)) *mesh {
	t.Helper()
	ns := embedded.New(embedded.Options{Addr: "127.0.0.1:0"})
	if err := ns.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	demo, err := simbroker.StartDemo(simbroker.DemoOptions{NameServers: []string{ns.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(demo.Close)
	dir := t.TempDir()
	for name, body := range policies {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cp := startControlPlane(t, ns.Addr(), dir, "127.0.0.1:0")
	xc, err := sidecar.Dial(cp.Addr(), sidecar.Options{NodeID: "dataplane-test", MinBackoff: 20 * time.Millisecond,
		MaxBackoff: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { xc.Close() })
	opts := Options{Listen: "127.0.0.1:0", Routes: xc}
	for _, f := range tune {
		f(&opts)
	}
	p := New(opts)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return &mesh{ns: ns, demo: demo, dir: dir, proxy: p, cp: cp, xc: xc}
}

// startControlPlane starts a control plane watching the NameServer and the config directory, serving xDS on
// addr, and stops it when the test ends (Stop twice is fine).
func startControlPlane(t *testing.T, nameServer, dir, addr string) *controlplane.ControlPlane {
	t.Helper()
	return controlplanetest.Start(t, controlplane.Config{
		Stack: server.StackConfig{Grace: time.Second, Addr: addr},
		Sources: controlplane.SourcesConfig{NameServers: []string{nameServer}, ConfigDir: dir, ConfigPoll: 50 * time.Millisecond,
			Watch: watcher.Options{RateLimit: 1e6, Interval: 100 * time.Millisecond, BrokerInterval: 50 * time.Millisecond}},
	})
}

// client speaks the remoting protocol as an application does: requests out, answers by id, and the requests a
// broker pushes kept apart.
type client struct {
	t      *testing.T
	nc     net.Conn
	mu     sync.Mutex
	next   int32
	waits  map[int32]chan *remoting.Command
	pushed chan *remoting.Command
	done   chan struct{}
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := &client{t: t, nc: nc, waits: map[int32]chan *remoting.Command{}, pushed: make(chan *remoting.Command, 16), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		r := remoting.NewReader(nc, 0)
		for {
			cmd, err := r.Read()
			if err != nil {
				return
			}
			if !cmd.IsResponse() {
				c.pushed <- cmd
				continue
			}
			c.mu.Lock()
			ch := c.waits[cmd.Opaque]
			delete(c.waits, cmd.Opaque)
			c.mu.Unlock()
			if ch != nil {
				ch <- cmd
			}
		}
	}()
	t.Cleanup(func() { nc.Close(); <-c.done })
	return c
}

func (c *client) call(code int32, ext map[string]string, body []byte) *remoting.Command {
	c.t.Helper()
	req := remoting.NewRequest(code, ext)
	req.Body = body
	ch := make(chan *remoting.Command, 1)
	c.mu.Lock()
	c.next++
	req.Opaque = c.next
	c.waits[req.Opaque] = ch
	c.mu.Unlock()
	frame, err := remoting.Encode(req)
	if err != nil {
		c.t.Fatal(err)
	}
	if _, err := c.nc.Write(frame); err != nil {
		c.t.Fatal(err)
	}
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		c.t.Fatalf("no answer to %d", code)
		return nil
	}
}

// route asks the sidecar's NameServer port for a topic's route.
func route(t *testing.T, p *Proxy, topic string) (*remoting.TopicRouteData, *remoting.Command) {
	t.Helper()
	r := dial(t, p.Addr()).call(remoting.GetRouteInfoByTopic, map[string]string{"topic": topic}, nil)
	if r.Code != remoting.Success {
		return nil, r
	}
	data, err := remoting.DecodeTopicRouteData(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return data, r
}

func send(c *client, topic string, queue int, body string) *remoting.Command {
	c.t.Helper()
	return c.call(remoting.SendMessageV2, map[string]string{"a": "pg", "b": topic, "c": "TBW102", "d": "4",
		"e": strconv.Itoa(queue), "f": "0", "g": strconv.FormatInt(time.Now().UnixMilli(), 10), "h": "0",
		"i": message.EncodeProperties(map[string]string{"UNIQ_KEY": body}), "j": "0", "k": "false", "m": "false"}, []byte(body))
}

// stored is how many messages of a topic a broker group's master holds, over its queues.
func stored(t *testing.T, m *mesh, group, topic string) int64 {
	t.Helper()
	c := dial(t, m.demo.Broker(group, 0).Addr())
	var n int64
	for q := range 8 {
		r := c.call(remoting.GetMaxOffset, map[string]string{"topic": topic, "queueId": strconv.Itoa(q)}, nil)
		if r.Code != remoting.Success {
			break
		}
		v, _ := strconv.ParseInt(r.Ext("offset"), 10, 64)
		n += v
	}
	return n
}

// A route query through the sidecar answers the served route with every group at a port of the sidecar's; a
// send to a group's port is stored by that group's master, and a pull through the port reads it back.
func TestRouteSendPull(t *testing.T) {
	m := startMesh(t, nil)
	data, r0 := route(t, m.proxy, simbroker.DemoTopic)
	if data == nil {
		t.Fatalf("route of %s: %d %s", simbroker.DemoTopic, r0.Code, r0.Remark)
	}
	if len(data.BrokerDatas) != 2 || len(data.QueueDatas) != 2 {
		t.Fatalf("route %+v", data)
	}
	for _, bd := range data.BrokerDatas {
		if want := m.proxy.GroupAddr(bd.BrokerName); len(bd.BrokerAddrs) != 1 || bd.BrokerAddrs[0] != want || want == "" {
			t.Fatalf("group %s at %v, want only the sidecar's port %s", bd.BrokerName, bd.BrokerAddrs, want)
		}
	}
	if _, r := route(t, m.proxy, "no-such-topic"); r == nil || r.Code != remoting.TopicNotExist {
		t.Fatalf("unknown topic answered %v", r)
	}

	b := dial(t, m.proxy.GroupAddr("broker-b"))
	r := send(b, simbroker.DemoTopic, 2, "hello")
	if r.Code != remoting.Success || r.Ext("queueId") != "2" {
		t.Fatalf("send through the sidecar: %d %s %v", r.Code, r.Remark, r.ExtFields)
	}
	if got := stored(t, m, "broker-b", simbroker.DemoTopic); got != 1 {
		t.Fatalf("broker-b holds %d messages of %s, want 1", got, simbroker.DemoTopic)
	}
	p := b.call(remoting.PullMessage, map[string]string{"consumerGroup": "cg", "topic": simbroker.DemoTopic, "queueId": "2",
		"queueOffset": "0", "maxMsgNums": "32", "sysFlag": "2", "commitOffset": "0", "suspendTimeoutMillis": "0",
		"subscription": "*", "subVersion": "0"}, nil)
	msgs, err := message.DecodeExts(p.Body)
	if p.Code != remoting.Success || err != nil || len(msgs) != 1 || string(msgs[0].Body) != "hello" {
		t.Fatalf("pull through the sidecar: %d %s, %v %v", p.Code, p.Remark, msgs, err)
	}
}

// A drain is applied to real traffic: a send the client addressed to the drained group is stored by the other
// writable group, in one of its queues.
func TestDrainOnRealTraffic(t *testing.T) {
	m := startMesh(t, map[string]string{"drain.yaml": `apiVersion: rocketpilot.io/v1alpha1
kind: TopicRoute
metadata: {name: drain-b}
spec:
  topics: {exact: [TopicTest]}
  drain: {brokerNames: [broker-b]}
`})
	route(t, m.proxy, simbroker.DemoTopic)
	b := dial(t, m.proxy.GroupAddr("broker-b"))
	for i := range 20 {
		if r := send(b, simbroker.DemoTopic, 3, "m"+strconv.Itoa(i)); r.Code != remoting.Success {
			t.Fatalf("send %d: %d %s", i, r.Code, r.Remark)
		}
	}
	if a, bb := stored(t, m, "broker-a", simbroker.DemoTopic), stored(t, m, "broker-b", simbroker.DemoTopic); a != 20 || bb != 0 {
		t.Fatalf("broker-a holds %d, broker-b %d; want all 20 on broker-a", a, bb)
	}
}

// A weighted TopicRoute splits real sends by its weights, counted at the brokers.
func TestWeightsOnRealTraffic(t *testing.T) {
	m := startMesh(t, map[string]string{"weights.yaml": `apiVersion: rocketpilot.io/v1alpha1
kind: TopicRoute
metadata: {name: split}
spec:
  topics: {exact: [TopicTest]}
  send:
    backends:
      - {brokerNames: [broker-a], weight: 80}
      - {brokerNames: [broker-b], weight: 20}
`})
	route(t, m.proxy, simbroker.DemoTopic)
	const n = 10000
	a := dial(t, m.proxy.GroupAddr("broker-a"))
	for i := range n {
		if r := send(a, simbroker.DemoTopic, i%4, "w"); r.Code != remoting.Success {
			t.Fatalf("send %d: %d %s", i, r.Code, r.Remark)
		}
	}
	onA := stored(t, m, "broker-a", simbroker.DemoTopic)
	onB := stored(t, m, "broker-b", simbroker.DemoTopic)
	share := float64(onA) / n * 100
	t.Logf("%d sends: broker-a %d (%.1f%%), broker-b %d", n, onA, share, onB)
	if onA+onB != n || share < 75 || share > 85 {
		t.Fatalf("broker-a took %.1f%% of %d sends (b %d), want 80 ± 5", share, n, onB)
	}
}

// A heartbeat through the sidecar registers the consumer with the broker, which tells the group's members when
// it changes (NOTIFY_CONSUMER_IDS_CHANGED): the request reaches the application's connection.
func TestBrokerRequestsReachTheApplication(t *testing.T) {
	m := startMesh(t, nil)
	route(t, m.proxy, simbroker.DemoTopic)
	hb := func(id string) []byte {
		return []byte(`{"clientID":"` + id + `","consumerDataSet":[{"groupName":"cg","consumeType":"CONSUME_PASSIVELY",` +
			`"messageModel":"CLUSTERING","subscriptionDataSet":[{"topic":"TopicTest","subString":"*"}]}]}`)
	}
	first := dial(t, m.proxy.GroupAddr("broker-a"))
	if r := first.call(remoting.HeartBeat, nil, hb("c1")); r.Code != remoting.Success {
		t.Fatalf("heartbeat: %d %s", r.Code, r.Remark)
	}
	drain(first.pushed)
	second := dial(t, m.proxy.GroupAddr("broker-a"))
	if r := second.call(remoting.HeartBeat, nil, hb("c2")); r.Code != remoting.Success {
		t.Fatalf("second heartbeat: %d %s", r.Code, r.Remark)
	}
	select {
	case req := <-first.pushed:
		if req.Code != remoting.NotifyConsumerIdsChanged || req.Ext("consumerGroup") != "cg" {
			t.Fatalf("pushed %v", req)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the first member was not told that its group changed")
	}
	r := first.call(remoting.GetConsumerListByGroup, map[string]string{"consumerGroup": "cg"}, nil)
	if r.Code != remoting.Success || string(r.Body) != `{"consumerIdList":["c1","c2"]}` {
		t.Fatalf("consumer list: %d %s", r.Code, r.Body)
	}
}

// drain empties a channel of what is already in it.
func drain(ch chan *remoting.Command) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

// A broker that cannot be reached is an error answer naming it, and the application's connection stays usable.
func TestUnreachableBroker(t *testing.T) {
	m := startMesh(t, nil)
	route(t, m.proxy, simbroker.DemoTopic)
	b := dial(t, m.proxy.GroupAddr("broker-b"))
	m.demo.Broker("broker-b", 0).Stop()
	r := b.call(remoting.QueryConsumerOffset, map[string]string{"consumerGroup": "cg", "topic": "TopicTest", "queueId": "0"}, nil)
	if r.Code != remoting.SystemError {
		t.Fatalf("query of a stopped broker: %d %s", r.Code, r.Remark)
	}
	t.Logf("answer: %s", r.Remark)
	if err := m.demo.Broker("broker-b", 0).Start(); err != nil {
		t.Fatal(err)
	}
	if r := send(b, simbroker.DemoTopic, 0, "back"); r.Code != remoting.Success {
		t.Fatalf("send after the restart: %d %s", r.Code, r.Remark)
	}
}

// pop pops up to 4 messages of TopicTest through a group's port and returns them with their receipt handles, built
// as the Java client builds them (ExtraInfoUtil.buildExtraInfo from the answer's header and the group it asked).
func pop(t *testing.T, c *client, group string, invisible time.Duration) (msgs []*message.Ext, handles []string) {
	t.Helper()
	r := c.call(remoting.PopMessage, map[string]string{"consumerGroup": "pop-cg", "topic": simbroker.DemoTopic,
		"queueId": "-1", "maxMsgNums": "4", "invisibleTime": strconv.FormatInt(invisible.Milliseconds(), 10),
		"pollTime": "0", "bornTime": strconv.FormatInt(time.Now().UnixMilli(), 10), "initMode": "0", "order": "false"}, nil)
	if r.Code == remoting.PollingTimeout && r.Remark == "NO_MESSAGE_IN_QUEUE" {
		return nil, nil
	}
	if r.Code != remoting.Success {
		t.Fatalf("pop: %d %s", r.Code, r.Remark)
	}
	msgs, err := message.DecodeExts(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	starts, err := message.ParseStartOffsetInfo(r.Ext("startOffsetInfo"))
	if err != nil {
		t.Fatal(err)
	}
	popTime, _ := strconv.ParseInt(r.Ext("popTime"), 10, 64)
	reviveQid, _ := strconv.Atoi(r.Ext("reviveQid"))
	for _, m := range msgs {
		var ck int64 = -1
		for _, s := range starts {
			if s.QueueID == m.QueueID {
				ck = s.Offset
			}
		}
		handles = append(handles, message.ExtraInfo{CkQueueOffset: ck, PopTime: popTime, InvisibleTime: invisible.Milliseconds(),
			ReviveQid: int32(reviveQid), BrokerName: group, QueueID: m.QueueID, QueueOffset: m.QueueOffset,
			HasQueueOffset: true}.String())
	}
	return msgs, handles
}

// A Pop ack reaches the group that popped, whichever port it is sent on; an ack naming a group the sidecar has no
// route to is refused with a reason.
func TestPopAckGoesToTheGroupThatPopped(t *testing.T) {
	m := startMesh(t, nil)
	route(t, m.proxy, simbroker.DemoTopic)
	a, b := dial(t, m.proxy.GroupAddr("broker-a")), dial(t, m.proxy.GroupAddr("broker-b"))
	for q := range 4 {
		if r := send(a, simbroker.DemoTopic, q, "pop-"+strconv.Itoa(q)); r.Code != remoting.Success {
			t.Fatal(r.Remark)
		}
	}
	msgs, handles := pop(t, a, "broker-a", 300*time.Millisecond)
	if len(msgs) == 0 {
		t.Fatal("popped nothing from broker-a")
	}
	brokerA, brokerB := m.demo.Broker("broker-a", 0), m.demo.Broker("broker-b", 0)
	for i, h := range handles {
		info, err := message.ParseExtraInfo(h)
		if err != nil || info.BrokerName != "broker-a" {
			t.Fatalf("handle %q: %+v %v", h, info, err)
		}
		// Sent on broker-b's port: the sidecar takes it to broker-a, which popped.
		r := b.call(remoting.AckMessage, map[string]string{"consumerGroup": "pop-cg", "topic": simbroker.DemoTopic,
			"queueId": strconv.Itoa(int(msgs[i].QueueID)), "extraInfo": h, "offset": strconv.FormatInt(msgs[i].QueueOffset, 10)}, nil)
		if r.Code != remoting.Success {
			t.Fatalf("ack %d: %d %s", i, r.Code, r.Remark)
		}
	}
	if got, want := brokerA.RequestCount(remoting.AckMessage), int64(len(handles)); got != want || brokerB.RequestCount(remoting.AckMessage) != 0 {
		t.Fatalf("acks at broker-a %d (want %d), at broker-b %d", got, want, brokerB.RequestCount(remoting.AckMessage))
	}
	time.Sleep(400 * time.Millisecond) // past the invisible time: acked messages do not come back
	if again, _ := pop(t, a, "broker-a", time.Second); len(again) != 4-len(msgs) {
		t.Fatalf("popped %d messages after acking %d of 4", len(again), len(msgs))
	}

	info, _ := message.ParseExtraInfo(handles[0])
	info.BrokerName = "broker-z"
	r := a.call(remoting.AckMessage, map[string]string{"consumerGroup": "pop-cg", "topic": simbroker.DemoTopic,
		"queueId": "0", "extraInfo": info.String(), "offset": "0"}, nil)
	if r.Code != remoting.SystemError || !strings.Contains(r.Remark, "broker-z") {
		t.Fatalf("ack for a group without a route: %d %q", r.Code, r.Remark)
	}
}

// A drain written while the application is connected applies to its next requests on the same connection: once
// the first send lands on broker-a, every later one does.
func TestDrainAppliesWithoutReconnecting(t *testing.T) {
	m := startMesh(t, nil)
	route(t, m.proxy, simbroker.DemoTopic)
	b := dial(t, m.proxy.GroupAddr("broker-b"))
	if r := send(b, simbroker.DemoTopic, 1, "before"); r.Code != remoting.Success {
		t.Fatal(r.Remark)
	}
	if got := stored(t, m, "broker-b", simbroker.DemoTopic); got != 1 {
		t.Fatalf("before the drain broker-b holds %d, want 1", got)
	}
	if err := os.WriteFile(filepath.Join(m.dir, "drain.yaml"), []byte(`apiVersion: rocketpilot.io/v1alpha1
kind: TopicRoute
metadata: {name: drain-b}
spec:
  topics: {exact: [TopicTest]}
  drain: {brokerNames: [broker-b]}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for sent := 0; stored(t, m, "broker-a", simbroker.DemoTopic) == 0; sent++ {
		if time.Now().After(deadline) {
			t.Fatalf("after %d sends over 10s the drain has not applied", sent)
		}
		if r := send(b, simbroker.DemoTopic, 1, "during"); r.Code != remoting.Success {
			t.Fatal(r.Remark)
		}
		time.Sleep(10 * time.Millisecond)
	}
	onB := stored(t, m, "broker-b", simbroker.DemoTopic)
	for i := range 50 {
		if r := send(b, simbroker.DemoTopic, 1, "after-"+strconv.Itoa(i)); r.Code != remoting.Success {
			t.Fatal(r.Remark)
		}
	}
	if got := stored(t, m, "broker-b", simbroker.DemoTopic); got != onB {
		t.Fatalf("broker-b received %d sends after the drain applied", got-onB)
	}
}

// A broker lost under traffic (killed: the NameServer still lists it until its heartbeat timeout, so no route
// change helps yet): sends the application addresses to it go to the other writable group at once, and every send
// the application saw succeed is stored.
func TestSendsFailOverWhenABrokerIsLost(t *testing.T) {
	m := startMesh(t, nil)
	route(t, m.proxy, simbroker.DemoTopic)
	b := dial(t, m.proxy.GroupAddr("broker-b"))
	ok := 0
	for i := range 20 {
		if r := send(b, simbroker.DemoTopic, i%4, "before"); r.Code == remoting.Success {
			ok++
		}
	}
	m.demo.Broker("broker-b", 0).Kill()
	if _, still := route(t, m.proxy, simbroker.DemoTopic); still != nil && still.Code != remoting.Success {
		t.Fatalf("route after the kill: %d", still.Code)
	}
	failed := 0
	for i := range 100 {
		r := send(b, simbroker.DemoTopic, i%4, "after")
		if r.Code == remoting.Success {
			ok++
		} else {
			failed++
			t.Logf("send %d: %d %s", i, r.Code, r.Remark)
		}
	}
	if failed > 1 { // the send in flight when the connection broke may fail; the client retries it
		t.Fatalf("%d of 100 sends failed after broker-b was lost", failed)
	}
	if err := m.demo.Broker("broker-b", 0).Start(); err != nil {
		t.Fatal(err)
	}
	a, bb := stored(t, m, "broker-a", simbroker.DemoTopic), stored(t, m, "broker-b", simbroker.DemoTopic)
	if int(a+bb) != ok {
		t.Fatalf("%d sends succeeded, the brokers hold %d (a %d, b %d)", ok, a+bb, a, bb)
	}
	if a < 99 {
		t.Fatalf("broker-a holds %d; the sends after the loss should be there", a)
	}
}

// The control plane restarted under traffic: the sidecar keeps sending by its last routes while it is away, and
// follows the new one when it is back; no send fails and every one is stored.
func TestControlPlaneRestartUnderTraffic(t *testing.T) {
	m := startMesh(t, nil)
	route(t, m.proxy, simbroker.DemoTopic)
	a := dial(t, m.proxy.GroupAddr("broker-a"))
	sent := 0
	sendSome := func(n int, what string) {
		t.Helper()
		for i := range n {
			if r := send(a, simbroker.DemoTopic, i%4, what); r.Code != remoting.Success {
				t.Fatalf("send %s %d: %d %s", what, i, r.Code, r.Remark)
			}
			sent++
		}
	}
	sendSome(50, "before")
	addr := m.cp.Addr()
	m.cp.Stop()
	time.Sleep(routeTTL + 100*time.Millisecond) // past the proxy's cache: the xDS client's last routes answer
	sendSome(50, "while away")
	startControlPlane(t, m.ns.Addr(), m.dir, addr)
	deadline := time.Now().Add(10 * time.Second)
	for streams, _ := m.xc.Stats(); streams < 2; streams, _ = m.xc.Stats() {
		if time.Now().After(deadline) {
			t.Fatal("the sidecar did not reconnect to the restarted control plane")
		}
		sendSome(1, "reconnecting")
		time.Sleep(20 * time.Millisecond)
	}
	sendSome(50, "after")
	if got := stored(t, m, "broker-a", simbroker.DemoTopic) + stored(t, m, "broker-b", simbroker.DemoTopic); got != int64(sent) {
		t.Fatalf("%d sends succeeded, the brokers hold %d", sent, got)
	}
}

// Bad input costs one connection: a garbage frame, a frame over the size limit and an application that stops
// reading (its answers pile up until the write timeout) each close their own connection, and another application
// connection keeps working throughout.
func TestBadInputClosesOneConnection(t *testing.T) {
	m := startMesh(t, nil, func(o *Options) { o.MaxFrameSize = 1 << 20; o.WriteTimeout = 200 * time.Millisecond })
	route(t, m.proxy, simbroker.DemoTopic)
	port := m.proxy.GroupAddr("broker-a")
	good := dial(t, port)
	check := func(what string) {
		t.Helper()
		if r := send(good, simbroker.DemoTopic, 0, what); r.Code != remoting.Success {
			t.Fatalf("after %s, another connection's send: %d %s", what, r.Code, r.Remark)
		}
	}
	closed := func(nc net.Conn, what string) {
		t.Helper()
		_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.Copy(io.Discard, nc); err != nil {
			t.Fatalf("%s: the connection was not closed: %v", what, err)
		}
	}
	for what, bytes := range map[string][]byte{
		"a garbage frame":    {0, 0, 0, 8, 9, 0, 0, 4, 0xff, 0xff, 0xff, 0xff},
		"an oversized frame": {0x7f, 0, 0, 0, 0, 0, 0, 0},
	} {
		nc, err := net.Dial("tcp", port)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := nc.Write(bytes); err != nil {
			t.Fatal(err)
		}
		closed(nc, what)
		nc.Close()
		check(what)
	}

	// An application that asks and never reads: a queue of 1 KiB messages pulled again and again.
	body := strings.Repeat("x", 1024)
	for range 64 {
		send(good, simbroker.DemoTopic, 0, body)
	}
	deaf, err := net.Dial("tcp", port)
	if err != nil {
		t.Fatal(err)
	}
	defer deaf.Close()
	pull := testutil.Frame(t, remoting.PullMessage, map[string]string{"consumerGroup": "cg", "topic": simbroker.DemoTopic, "queueId": "0",
		"queueOffset": "0", "maxMsgNums": "32", "sysFlag": "2", "commitOffset": "0", "suspendTimeoutMillis": "0",
		"subscription": "*", "subVersion": "0"}, nil)
	start := time.Now()
	for time.Since(start) < 10*time.Second {
		if _, err := deaf.Write(pull); err != nil {
			break // the proxy gave up on it and closed it
		}
		time.Sleep(time.Millisecond) // a steady asker, not a flood the broker would take seconds to serve
	}
	if time.Since(start) >= 10*time.Second {
		t.Fatal("the proxy kept a connection that never reads for 10s")
	}
	t.Logf("a connection that never reads was closed after %v", time.Since(start).Round(time.Millisecond))
	check("an application that stopped reading")
}

// The proxy's metrics count requests by code and result, the broker's answer time, bytes, connections and the
// routes held.
func TestMetrics(t *testing.T) {
	m := startMesh(t, nil)
	reg := prometheus.NewRegistry()
	reg.MustRegister(m.proxy.Metrics().Collectors()...)
	route(t, m.proxy, simbroker.DemoTopic)
	a := dial(t, m.proxy.GroupAddr("broker-a"))
	for i := range 10 {
		if r := send(a, simbroker.DemoTopic, i%4, "metered"); r.Code != remoting.Success {
			t.Fatal(r.Remark)
		}
	}
	if r := send(a, "no-such-topic", 0, "x"); r.Code != remoting.TopicNotExist { // forwarded: the broker refuses it
		t.Fatalf("send to an unknown topic: %d %s", r.Code, r.Remark)
	}
	a.call(remoting.AckMessage, map[string]string{"consumerGroup": "g", "topic": simbroker.DemoTopic, "queueId": "0", "extraInfo": "bad", "offset": "0"}, nil)
	fams := promtest.Families(t, reg)
	for _, c := range []struct {
		family string
		labels map[string]string
		want   float64
	}{
		{"rocketpilot_sidecar_requests_total", map[string]string{"code": "310", "result": "success"}, 10},
		{"rocketpilot_sidecar_requests_total", map[string]string{"code": "310", "result": "broker_error"}, 1},
		{"rocketpilot_sidecar_requests_total", map[string]string{"code": "200051", "result": "refused"}, 1},
		{"rocketpilot_sidecar_upstream_seconds", map[string]string{"code": "310"}, 11}, // the histogram's count
		{"rocketpilot_sidecar_connections", map[string]string{"side": "application"}, 1},
		{"rocketpilot_sidecar_connections", map[string]string{"side": "broker"}, 1},
		{"rocketpilot_sidecar_routes", nil, 1},
	} {
		if got := promtest.Sum(fams, c.family, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.family, c.labels, got, c.want)
		}
	}
	if in := promtest.Sum(fams, "rocketpilot_sidecar_bytes_total", map[string]string{"direction": "in"}); in < 10*100 {
		t.Errorf("bytes in %v for 10 sends", in)
	}
}

// Drain refuses new connections at once and returns when the requests in flight have been answered: a pull the
// broker holds (long polling) is answered through the still-open connection first.
func TestDrainWaitsForRequestsInFlight(t *testing.T) {
	m := startMesh(t, nil)
	route(t, m.proxy, simbroker.DemoTopic)
	port := m.proxy.GroupAddr("broker-a")
	a := dial(t, port)
	held := make(chan *remoting.Command, 1)
	go func() {
		held <- a.call(remoting.PullMessage, map[string]string{"consumerGroup": "cg", "topic": simbroker.DemoTopic, "queueId": "3",
			"queueOffset": "0", "maxMsgNums": "32", "sysFlag": "2", "commitOffset": "0", "suspendTimeoutMillis": "300",
			"subscription": "*", "subVersion": "0"}, nil)
	}()
	for m.proxy.inflight.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.proxy.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Fatalf("Drain returned after %v, before the held pull was answered", d)
	}
	if r := <-held; r.Code != remoting.PullNotFound {
		t.Fatalf("the held pull: %d %s", r.Code, r.Remark)
	}
	if nc, err := net.DialTimeout("tcp", port, time.Second); err == nil {
		nc.Close()
		t.Fatal("a draining sidecar accepted a connection")
	}
}

// A topic moved to another broker group (its writes now only on broker-b: a new queue there, broker-a read-only)
// is followed by the next sends of a client that keeps its connection to broker-a's port. While broker-a already
// refuses and the route does not say so yet, the sidecar sends each refused send to broker-b: the application
// sees none refused.
func TestTopicMoveIsFollowedWithoutReconnecting(t *testing.T) {
	m := startMesh(t, nil)
	a, b := m.demo.Broker("broker-a", 0), m.demo.Broker("broker-b", 0)
	a.SetTopic(remoting.TopicConfig{TopicName: "moving", ReadQueueNums: 2, WriteQueueNums: 2, Perm: remoting.PermRead | remoting.PermWrite})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if data, _ := route(t, m.proxy, "moving"); data != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the new topic never reached the sidecar")
		}
		time.Sleep(20 * time.Millisecond)
	}
	app := dial(t, m.proxy.GroupAddr("broker-a"))
	if r := send(app, "moving", 0, "on a"); r.Code != remoting.Success {
		t.Fatal(r.Remark)
	}
	b.SetTopic(remoting.TopicConfig{TopicName: "moving", ReadQueueNums: 2, WriteQueueNums: 2, Perm: remoting.PermRead | remoting.PermWrite})
	for data, _ := route(t, m.proxy, "moving"); data == nil || len(data.QueueDatas) < 2; data, _ = route(t, m.proxy, "moving") {
		if time.Now().After(deadline) {
			t.Fatal("broker-b never joined the topic's route")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// broker-a turns read-only: it refuses at once, the route says so only after a poll.
	sendsAtA, storedAtA := a.RequestCount(remoting.SendMessageV2), stored(t, m, "broker-a", "moving")
	if err := a.SetPerm("moving", remoting.PermRead); err != nil {
		t.Fatal(err)
	}
	// Until the new route arrives, broker-a refuses the sends the sidecar still routes to it (NO_PERMISSION: not
	// stored); the sidecar sends each again to another writable group, so the application sees none refused.
	refused := 0
	for sent := 0; stored(t, m, "broker-b", "moving") == 0; sent++ {
		if time.Now().After(deadline) {
			t.Fatalf("after %d sends the move was not followed", sent)
		}
		switch r := send(app, "moving", 0, "moving"); r.Code {
		case remoting.Success:
		case remoting.NoPermission:
			refused++
		default:
			t.Fatalf("send during the move: %d %s", r.Code, r.Remark)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if refused > 0 {
		t.Fatalf("%d sends answered NO_PERMISSION during the move; the sidecar should have sent them to broker-b", refused)
	}
	// broker-a did refuse some (received, not stored): the retries were exercised, not avoided by timing.
	byA := a.RequestCount(remoting.SendMessageV2) - sendsAtA - (stored(t, m, "broker-a", "moving") - storedAtA)
	t.Logf("broker-a refused %d sends; the sidecar sent each to broker-b", byA)
	if byA == 0 {
		t.Fatal("broker-a refused nothing: the window before the route changed was not exercised")
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(m.proxy.Metrics().Collectors()...)
	if got := promtest.Sum(promtest.Families(t, reg), "rocketpilot_sidecar_requests_total", map[string]string{"code": "310", "result": "retried"}); got != float64(byA) {
		t.Fatalf("%v sends counted as retried, broker-a refused %d", got, byA)
	}
	onA := stored(t, m, "broker-a", "moving")
	for i := range 20 {
		if r := send(app, "moving", i%2, "after"); r.Code != remoting.Success {
			t.Fatalf("send after the move: %d %s", r.Code, r.Remark)
		}
	}
	if got := stored(t, m, "broker-a", "moving"); got != onA {
		t.Fatalf("broker-a, now read-only, received %d sends after the move", got-onA)
	}
}

// A group whose master stopped is still read through its slave: pulls on its port are served by the slave (which
// holds the master's messages), and sends on it go to the other writable group.
func TestReadsGoToTheSlaveWhileTheMasterIsAway(t *testing.T) {
	m := startMesh(t, nil)
	route(t, m.proxy, simbroker.DemoTopic)
	a := dial(t, m.proxy.GroupAddr("broker-a"))
	if r := send(a, simbroker.DemoTopic, 2, "kept by the slave"); r.Code != remoting.Success {
		t.Fatal(r.Remark)
	}
	m.demo.Broker("broker-a", 0).Stop()
	t.Cleanup(func() { m.demo.Broker("broker-a", 0).Start() })
	slave := m.demo.Broker("broker-a", 1)
	pull := map[string]string{"consumerGroup": "cg", "topic": simbroker.DemoTopic, "queueId": "2", "queueOffset": "0",
		"maxMsgNums": "32", "sysFlag": "2", "commitOffset": "0", "suspendTimeoutMillis": "0", "subscription": "*", "subVersion": "0"}
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := a.call(remoting.PullMessage, pull, nil)
		if r.Code == remoting.Success {
			msgs, err := message.DecodeExts(r.Body)
			if err != nil || len(msgs) != 1 || string(msgs[0].Body) != "kept by the slave" {
				t.Fatalf("pulled %v, %v", msgs, err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no pull served while broker-a's master was away: %d %s", r.Code, r.Remark)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if slave.RequestCount(remoting.PullMessage) == 0 {
		t.Fatal("the pull was not served by broker-a's slave")
	}
	if r := send(a, simbroker.DemoTopic, 2, "to broker-b"); r.Code != remoting.Success {
		t.Fatalf("send on broker-a's port with its master away: %d %s", r.Code, r.Remark)
	}
	if got := stored(t, m, "broker-b", simbroker.DemoTopic); got != 1 {
		t.Fatalf("broker-b holds %d, want the 1 send", got)
	}
}

// Sends refused by their broker and sent again elsewhere keep their own bodies while the application keeps
// sending: the sidecar recycles the frames it reads, and a send awaiting its answer holds its frame until then. 16
// senders share one connection to broker-a's port; broker-a refuses every send (its write permission off, its
// route unchanged), so every send is retried at broker-b, encoded again from its frame while later frames are
// read. broker-b must then hold each body sent, once.
func TestRetriedSendsKeepTheirBodies(t *testing.T) {
	m := startMesh(t, nil)
	if data, _ := route(t, m.proxy, simbroker.DemoTopic); data == nil {
		t.Fatal("no route for the demo topic")
	}
	m.demo.Broker("broker-a", 0).SetWritable(false)
	app := dial(t, m.proxy.GroupAddr("broker-a"))
	const senders, each = 16, 40
	pad := strings.Repeat("x", 1000)
	var wg sync.WaitGroup
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				body := fmt.Sprintf("%02d-%03d-%s", s, i, pad)
				if r := send(app, simbroker.DemoTopic, i%4, body); r.Code != remoting.Success {
					t.Errorf("send %s: %d %s", body[:6], r.Code, r.Remark)
					return
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	b := dial(t, m.demo.Broker("broker-b", 0).Addr())
	seen := map[string]int{}
	for q := range 8 {
		for offset := int64(0); ; {
			r := b.call(remoting.PullMessage, map[string]string{"consumerGroup": "retried-bodies", "topic": simbroker.DemoTopic,
				"queueId": strconv.Itoa(q), "queueOffset": strconv.FormatInt(offset, 10), "maxMsgNums": "32",
				"sysFlag": strconv.Itoa(pullFlagSubscription), "commitOffset": "0", "suspendTimeoutMillis": "0",
				"subscription": "*", "subVersion": "0", "expressionType": "TAG"}, nil)
			if r.Code != remoting.Success {
				break
			}
			msgs, err := message.DecodeExts(r.Body)
			if err != nil {
				t.Fatal(err)
			}
			for _, msg := range msgs {
				seen[string(msg.Body)]++
			}
			offset = msgs[len(msgs)-1].QueueOffset + 1
		}
	}
	for s := range senders {
		for i := range each {
			if body := fmt.Sprintf("%02d-%03d-%s", s, i, pad); seen[body] != 1 {
				t.Errorf("broker-b holds send %02d-%03d %d times", s, i, seen[body])
			}
			delete(seen, fmt.Sprintf("%02d-%03d-%s", s, i, pad))
		}
	}
	if len(seen) > 0 {
		t.Errorf("broker-b holds %d bodies that were never sent", len(seen))
	}
	if got := m.demo.Broker("broker-a", 0).RequestCount(remoting.SendMessageV2); got < senders*each {
		t.Fatalf("broker-a was sent %d sends, fewer than the %d retried", got, senders*each)
	}
}
