package dataplane

import (
	"encoding/json"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/rocketpilot/rocketpilot/remoting"
	"github.com/rocketpilot/rocketpilot/remoting/message"
	"github.com/rocketpilot/rocketpilot/simbroker"
	"github.com/rocketpilot/rocketpilot/xds/sidecar"
	"github.com/rocketpilot/rocketpilot/xds/translate"
)

const popPolicy = `apiVersion: rocketpilot.io/v1alpha1
kind: TopicRoute
metadata: {name: pop}
spec:
  topics: {exact: [TopicTest]}
  pop:
    consumerGroups: [pop-g]
    invisibleTime: 1s
`

// startPopMesh is a mesh whose control plane puts group pop-g in Pop mode on TopicTest, once the sidecar's xDS
// client holds that rule.
func startPopMesh(t *testing.T) *mesh {
	t.Helper()
	m := startMesh(t, map[string]string{"pop.yaml": popPolicy})
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := m.xc.Route(t.Context(), simbroker.DemoTopic)
		if err == nil && r.Pop["pop-g"].InvisibleTime == time.Second {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sidecar never held the Pop rule: %+v %v", r, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	route(t, m.proxy, simbroker.DemoTopic) // the groups' ports
	return m
}

// sendHeartbeat sends the heartbeat of a consumer of group on TopicTest (and its retry topic), as client id.
func sendHeartbeat(c *client, clientID, group string) {
	c.t.Helper()
	body := `{"clientID":"` + clientID + `","producerDataSet":[],"consumerDataSet":[{"groupName":"` + group +
		`","consumeType":"CONSUME_PASSIVELY","messageModel":"CLUSTERING","consumeFromWhere":"CONSUME_FROM_FIRST_OFFSET",` +
		`"subscriptionDataSet":[{"topic":"TopicTest","subString":"*"},{"topic":"%RETRY%` + group + `","subString":"*"}]}]}`
	if r := c.call(remoting.HeartBeat, nil, []byte(body)); r.Code != remoting.Success {
		c.t.Fatalf("heartbeat: %d %s", r.Code, r.Remark)
	}
}

// pull pulls a queue of TopicTest as a classic consumer does; it returns the answer and its messages.
func pull(c *client, group string, queue int, offset int64) (*remoting.Command, []*message.Ext) {
	c.t.Helper()
	return pullCommitting(c, group, queue, offset, -1)
}

// pullCommitting is pull with the commit offset a client's pull carries (FLAG_COMMIT_OFFSET) when commit >= 0,
// and no subscription of its own (the broker takes the heartbeat's).
func pullCommitting(c *client, group string, queue int, offset, commit int64) (*remoting.Command, []*message.Ext) {
	c.t.Helper()
	flags, sub := pullFlagSuspend|pullFlagSubscription, "*"
	if commit >= 0 {
		flags, sub = pullFlagSuspend|pullFlagCommitOffset, ""
	}
	r := c.call(remoting.PullMessage, map[string]string{"consumerGroup": group, "topic": simbroker.DemoTopic,
		"queueId": strconv.Itoa(queue), "queueOffset": strconv.FormatInt(offset, 10), "maxMsgNums": "32",
		"sysFlag": strconv.Itoa(flags), "commitOffset": strconv.FormatInt(max(commit, 0), 10), "suspendTimeoutMillis": "300",
		"subscription": sub, "subVersion": "0", "expressionType": "TAG"}, nil)
	if r.Code != remoting.Success {
		return r, nil
	}
	msgs, err := message.DecodeExts(r.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return r, msgs
}

func bodies(msgs []*message.Ext) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = string(m.Body)
	}
	return out
}

func offsets(msgs []*message.Ext) []int64 {
	out := make([]int64, len(msgs))
	for i, m := range msgs {
		out[i] = m.QueueOffset
	}
	return out
}

// waitPopStats waits until the group's Pop counts satisfy ok.
func waitPopStats(t *testing.T, p *Proxy, group string, ok func(PopStats) bool) PopStats {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var s PopStats
		for _, g := range p.PopStats() {
			if g.Group == group {
				s = g
			}
		}
		if ok(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("Pop counts of %s: %+v", group, s)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// In Pop mode a classic consumer's pull is served by Pop with the sidecar's own offsets; its commit acks exactly
// the messages below it; what a closed connection left un-acked comes back after the invisible time; a
// send-back hands a message out again after its retry delay; the rebalance and lock requests are answered so that
// the application keeps every queue.
func TestPullBecomesPop(t *testing.T) {
	m := startPopMesh(t)
	broker := m.demo.Broker("broker-a", 0)
	a := dial(t, m.proxy.GroupAddr("broker-a"))
	sendHeartbeat(a, "app-1", "pop-g")

	r := a.call(remoting.GetConsumerListByGroup, map[string]string{"consumerGroup": "pop-g"}, nil)
	var list struct {
		IDs []string `json:"consumerIdList"`
	}
	if err := json.Unmarshal(r.Body, &list); r.Code != remoting.Success || err != nil || !slices.Equal(list.IDs, []string{"app-1"}) {
		t.Fatalf("consumer list in Pop mode: %d %s %v", r.Code, r.Body, err)
	}
	mqs := `[{"topic":"TopicTest","brokerName":"broker-a","queueId":0},{"topic":"TopicTest","brokerName":"broker-a","queueId":1}]`
	r = a.call(remoting.LockBatchMQ, nil, []byte(`{"consumerGroup":"pop-g","clientId":"app-1","mqSet":`+mqs+`}`))
	if r.Code != remoting.Success || string(r.Body) != `{"lockOKMQSet":`+mqs+`}` {
		t.Fatalf("lock in Pop mode: %d %s", r.Code, r.Body)
	}
	r = a.call(remoting.QueryConsumerOffset, map[string]string{"consumerGroup": "pop-g", "topic": simbroker.DemoTopic, "queueId": "0"}, nil)
	if r.Code != remoting.Success || r.Ext("offset") != "0" {
		t.Fatalf("offset in Pop mode: %d %s %v", r.Code, r.Remark, r.ExtFields)
	}
	if broker.RequestCount(remoting.GetConsumerListByGroup)+broker.RequestCount(remoting.LockBatchMQ)+
		broker.RequestCount(remoting.QueryConsumerOffset) != 0 {
		t.Fatal("a request the sidecar answers in Pop mode reached the broker")
	}

	want := []string{"m0", "m1", "m2", "m3", "m4"}
	for _, b := range want {
		if r := send(a, simbroker.DemoTopic, 0, b); r.Code != remoting.Success {
			t.Fatal(r.Remark)
		}
	}
	r, msgs := pull(a, "pop-g", 0, 0)
	if r.Code != remoting.Success || !slices.Equal(bodies(msgs), want) || !slices.Equal(offsets(msgs), []int64{0, 1, 2, 3, 4}) ||
		r.Ext("nextBeginOffset") != "5" {
		t.Fatalf("pull in Pop mode: %d %s, bodies %v offsets %v, header %v", r.Code, r.Remark, bodies(msgs), offsets(msgs), r.ExtFields)
	}
	if broker.RequestCount(remoting.PopMessage) == 0 || broker.RequestCount(remoting.PullMessage) != 0 {
		t.Fatalf("at the broker: %d pops, %d pulls", broker.RequestCount(remoting.PopMessage), broker.RequestCount(remoting.PullMessage))
	}
	// Nothing more to pop: the pull finds nothing, at the same next offset.
	if r, _ := pull(a, "pop-g", 0, 5); r.Code != remoting.PullNotFound || r.Ext("nextBeginOffset") != "5" {
		t.Fatalf("empty pull in Pop mode: %d %s %v", r.Code, r.Remark, r.ExtFields)
	}

	// The application consumed m0..m2: its commit acks those three, no more.
	if r := a.call(remoting.UpdateConsumerOffset, map[string]string{"consumerGroup": "pop-g", "topic": simbroker.DemoTopic,
		"queueId": "0", "commitOffset": "3"}, nil); r.Code != remoting.Success {
		t.Fatalf("commit: %d %s", r.Code, r.Remark)
	}
	waitPopStats(t, m.proxy, "pop-g", func(s PopStats) bool { return s.Acked == 3 })
	if n, single := broker.RequestCount(remoting.BatchAckMessage), broker.RequestCount(remoting.AckMessage); n != 1 || single != 0 {
		t.Fatalf("%d batch acks and %d acks at the broker, want the 3 messages in 1 batch ack", n, single)
	}

	// The application dies: m3 and m4 come back, after the invisible time, to another connection.
	a.nc.Close()
	waitPopStats(t, m.proxy, "pop-g", func(s PopStats) bool { return s.Released == 2 && s.InFlight == 0 })
	b := dial(t, m.proxy.GroupAddr("broker-a"))
	sendHeartbeat(b, "app-2", "pop-g")
	var again []*message.Ext
	deadline := time.Now().Add(5 * time.Second)
	for len(again) < 2 && time.Now().Before(deadline) {
		_, got := pull(b, "pop-g", 0, int64(len(again)))
		again = append(again, got...)
	}
	if !slices.Equal(bodies(again), []string{"m3", "m4"}) || !slices.Equal(offsets(again), []int64{0, 1}) {
		t.Fatalf("after the invisible time: bodies %v offsets %v, want m3 m4 at 0 1", bodies(again), offsets(again))
	}
	waitPopStats(t, m.proxy, "pop-g", func(s PopStats) bool { return s.Redelivered == 2 && s.Popped == 7 })

	// m3 fails and is sent back (delay level 1: one second); m4 is consumed: the commit past both acks m4 only.
	r = b.call(remoting.ConsumerSendMsgBack, map[string]string{"group": "pop-g", "originTopic": simbroker.DemoTopic,
		"offset": strconv.FormatInt(again[0].CommitLogOffset, 10), "delayLevel": "1", "originMsgId": again[0].OffsetMsgID(),
		"maxReconsumeTimes": "16"}, nil)
	if r.Code != remoting.Success {
		t.Fatalf("send-back in Pop mode: %d %s", r.Code, r.Remark)
	}
	if r := b.call(remoting.UpdateConsumerOffset, map[string]string{"consumerGroup": "pop-g", "topic": simbroker.DemoTopic,
		"queueId": "0", "commitOffset": "2"}, nil); r.Code != remoting.Success {
		t.Fatalf("commit: %d %s", r.Code, r.Remark)
	}
	s := waitPopStats(t, m.proxy, "pop-g", func(s PopStats) bool { return s.Acked == 4 && s.SentBack == 1 })
	if s.InFlight != 0 || s.AckFailed != 0 || broker.RequestCount(remoting.ConsumerSendMsgBack) != 0 {
		t.Fatalf("Pop counts %+v; send-backs at the broker %d", s, broker.RequestCount(remoting.ConsumerSendMsgBack))
	}
	var third []*message.Ext
	for deadline := time.Now().Add(5 * time.Second); len(third) == 0 && time.Now().Before(deadline); {
		_, third = pull(b, "pop-g", 0, 2)
	}
	if !slices.Equal(bodies(third), []string{"m3"}) || third[0].QueueOffset != 2 {
		t.Fatalf("after the retry delay: %v at %v, want m3 at 2", bodies(third), offsets(third))
	}

	// A send-back of a message this connection does not hold is refused, with the reason.
	r = b.call(remoting.ConsumerSendMsgBack, map[string]string{"group": "pop-g", "originTopic": simbroker.DemoTopic,
		"offset": "123456789", "delayLevel": "1"}, nil)
	if r.Code != remoting.SystemError || r.Remark == "" {
		t.Fatalf("send-back of a message not popped: %d %q", r.Code, r.Remark)
	}
}

// A group not in Pop mode is served classically: its pulls, offsets and consumer list reach the broker.
func TestClassicGroupBesidePopMode(t *testing.T) {
	m := startPopMesh(t)
	broker := m.demo.Broker("broker-a", 0)
	a := dial(t, m.proxy.GroupAddr("broker-a"))
	sendHeartbeat(a, "app-1", "classic-g")
	if r := send(a, simbroker.DemoTopic, 1, "c0"); r.Code != remoting.Success {
		t.Fatal(r.Remark)
	}
	r := a.call(remoting.GetConsumerListByGroup, map[string]string{"consumerGroup": "classic-g"}, nil)
	if r.Code != remoting.Success || broker.RequestCount(remoting.GetConsumerListByGroup) != 1 {
		t.Fatalf("consumer list of a classic group: %d %s, at the broker %d", r.Code, r.Remark, broker.RequestCount(remoting.GetConsumerListByGroup))
	}
	r, msgs := pull(a, "classic-g", 1, 0)
	if r.Code != remoting.Success || !slices.Equal(bodies(msgs), []string{"c0"}) || broker.RequestCount(remoting.PopMessage) != 0 {
		t.Fatalf("classic pull: %d %s %v; pops at the broker %d", r.Code, r.Remark, bodies(msgs), broker.RequestCount(remoting.PopMessage))
	}
}

// A sidecar restarted while its application held popped messages keeps nothing and loses nothing: the broker hands
// what was not acked out again after the invisible time, through the new sidecar. The application goes on from
// the offsets it had (its pulls carry them, and its commit), and the new sidecar numbers on from there: a commit
// of what the application consumed before acks nothing handed out since.
func TestPopModeSidecarRestart(t *testing.T) {
	m := startPopMesh(t)
	a := dial(t, m.proxy.GroupAddr("broker-a"))
	sendHeartbeat(a, "app-1", "pop-g")
	want := []string{"r0", "r1", "r2"}
	for _, b := range want {
		if r := send(a, simbroker.DemoTopic, 2, b); r.Code != remoting.Success {
			t.Fatal(r.Remark)
		}
	}
	if r, msgs := pull(a, "pop-g", 2, 0); r.Code != remoting.Success || !slices.Equal(bodies(msgs), want) {
		t.Fatalf("pull: %d %s %v", r.Code, r.Remark, bodies(msgs))
	}
	if err := m.proxy.Close(); err != nil {
		t.Fatal(err)
	}

	restarted := New(Options{Listen: "127.0.0.1:0", Routes: m.xc})
	if err := restarted.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { restarted.Close() })
	route(t, restarted, simbroker.DemoTopic)
	b := dial(t, restarted.GroupAddr("broker-a"))
	sendHeartbeat(b, "app-1", "pop-g")
	var again []*message.Ext
	for deadline := time.Now().Add(5 * time.Second); len(again) < len(want) && time.Now().Before(deadline); {
		_, got := pullCommitting(b, "pop-g", 2, 3+int64(len(again)), 3) // it consumed r0..r2 before
		again = append(again, got...)
	}
	if !slices.Equal(bodies(again), want) || !slices.Equal(offsets(again), []int64{3, 4, 5}) {
		t.Fatalf("after the restart and the invisible time: %v at %v, want %v at 3 4 5", bodies(again), offsets(again), want)
	}
	s := waitPopStats(t, restarted, "pop-g", func(s PopStats) bool { return s.Redelivered == 3 && s.InFlight == 3 })
	if s.Acked != 0 {
		t.Fatalf("the application's old commit acked what it was handed since: %+v", s)
	}
	pullCommitting(b, "pop-g", 2, 6, 6) // it consumed them: its next pull commits
	waitPopStats(t, restarted, "pop-g", func(s PopStats) bool { return s.Acked == 3 && s.InFlight == 0 })
}

// A group's filter is the one its heartbeat subscribed with when its pulls carry none, as at a broker: only
// matching messages are popped, and a send-back past the maximum reconsume times (or with a negative delay level)
// moves the message to the group's dead-letter queue and acks the popped copy.
func TestPopModeFilterAndDeadLetters(t *testing.T) {
	m := startPopMesh(t)
	a := dial(t, m.proxy.GroupAddr("broker-a"))
	body := `{"clientID":"app-1","consumerDataSet":[{"groupName":"pop-g","messageModel":"CLUSTERING",` +
		`"consumeFromWhere":"CONSUME_FROM_FIRST_OFFSET","subscriptionDataSet":[{"topic":"TopicTest","subString":"TagA",` +
		`"expressionType":"TAG"},{"topic":"%RETRY%pop-g","subString":"*"}]}]}`
	if r := a.call(remoting.HeartBeat, nil, []byte(body)); r.Code != remoting.Success {
		t.Fatalf("heartbeat: %d %s", r.Code, r.Remark)
	}
	for i, tag := range []string{"TagA", "TagB", "TagA"} {
		r := a.call(remoting.SendMessageV2, map[string]string{"a": "pg", "b": simbroker.DemoTopic, "c": "TBW102", "d": "4",
			"e": "3", "f": "0", "g": strconv.FormatInt(time.Now().UnixMilli(), 10), "h": "0",
			"i": message.EncodeProperties(map[string]string{"TAGS": tag, "UNIQ_KEY": "f" + strconv.Itoa(i)}), "j": "0", "k": "false", "m": "false"},
			[]byte("f"+strconv.Itoa(i)))
		if r.Code != remoting.Success {
			t.Fatal(r.Remark)
		}
	}
	r, msgs := pullCommitting(a, "pop-g", 3, 0, 0)
	if r.Code != remoting.Success || !slices.Equal(bodies(msgs), []string{"f0", "f2"}) {
		t.Fatalf("pull with the heartbeat's filter TagA: %d %s %v", r.Code, r.Remark, bodies(msgs))
	}
	r = a.call(remoting.ConsumerSendMsgBack, map[string]string{"group": "pop-g", "originTopic": simbroker.DemoTopic,
		"offset": strconv.FormatInt(msgs[0].CommitLogOffset, 10), "delayLevel": "-1", "originMsgId": msgs[0].OffsetMsgID(),
		"maxReconsumeTimes": "16"}, nil)
	if r.Code != remoting.Success {
		t.Fatalf("send-back to the dead-letter queue: %d %s", r.Code, r.Remark)
	}
	s := waitPopStats(t, m.proxy, "pop-g", func(s PopStats) bool { return s.SentBack == 1 && s.Acked == 1 })
	if s.InFlight != 1 {
		t.Fatalf("Pop counts %+v: want f2 alone in flight", s)
	}
	dlq := a.call(remoting.GetMaxOffset, map[string]string{"topic": "%DLQ%pop-g", "queueId": "0"}, nil)
	if dlq.Code != remoting.Success || dlq.Ext("offset") != "1" {
		t.Fatalf("the dead-letter queue: %d %s %v", dlq.Code, dlq.Remark, dlq.ExtFields)
	}
}

// A broker that does not know BATCH_ACK_MESSAGE (before 5.1.3) gets the acks one message at a time, the first batch
// included, and no more batches.
func TestPopAcksOneByOneWhereBatchAcksAreUnknown(t *testing.T) {
	b := simbroker.New(simbroker.Options{Cluster: "c", Name: "broker-a", Without: []int32{remoting.BatchAckMessage},
		Topics: []remoting.TopicConfig{{TopicName: simbroker.DemoTopic, ReadQueueNums: 1, WriteQueueNums: 1, Perm: remoting.PermRead | remoting.PermWrite}}})
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	data := &remoting.TopicRouteData{
		QueueDatas:  []remoting.QueueData{{BrokerName: "broker-a", ReadQueueNums: 1, WriteQueueNums: 1, Perm: 6}},
		BrokerDatas: []remoting.BrokerData{{Cluster: "c", BrokerName: "broker-a", BrokerAddrs: map[int64]string{0: b.Addr()}}},
	}
	p := startStaticProxy(t, &sidecar.Route{Topic: simbroker.DemoTopic, Data: data,
		Send: []translate.Target{{BrokerName: "broker-a", Addr: b.Addr()}},
		Pop:  map[string]translate.PopMode{"pop-g": {InvisibleTime: time.Minute}}})
	a := dial(t, p.GroupAddr("broker-a"))
	sendHeartbeat(a, "app-1", "pop-g")
	for round, bodies := range [][]string{{"a0", "a1"}, {"a2", "a3", "a4"}} {
		for _, body := range bodies {
			if r := send(a, simbroker.DemoTopic, 0, body); r.Code != remoting.Success {
				t.Fatal(r.Remark)
			}
		}
		r, msgs := pull(a, "pop-g", 0, 0)
		if r.Code != remoting.Success || len(msgs) != len(bodies) {
			t.Fatalf("round %d: pull %d %s, %d messages", round, r.Code, r.Remark, len(msgs))
		}
		next, _ := strconv.ParseInt(r.Ext("nextBeginOffset"), 10, 64)
		a.call(remoting.UpdateConsumerOffset, map[string]string{"consumerGroup": "pop-g", "topic": simbroker.DemoTopic,
			"queueId": "0", "commitOffset": strconv.FormatInt(next, 10)}, nil)
		waitPopStats(t, p, "pop-g", func(s PopStats) bool { return s.Acked == next && s.InFlight == 0 })
	}
	if batches, singles := b.RequestCount(remoting.BatchAckMessage), b.RequestCount(remoting.AckMessage); batches != 1 || singles != 5 {
		t.Fatalf("%d batch acks and %d acks at the broker, want the refused first batch and 5 single acks", batches, singles)
	}
}
