package dataplane

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rocketpilot/rocketpilot/internal/testutil"
	"github.com/rocketpilot/rocketpilot/remoting"
	"github.com/rocketpilot/rocketpilot/remoting/message"
	"github.com/rocketpilot/rocketpilot/simbroker"
	"github.com/rocketpilot/rocketpilot/xds/sidecar"
	"github.com/rocketpilot/rocketpilot/xds/translate"
)

// staticRoutes serves one route for every topic.
type staticRoutes struct{ r *sidecar.Route }

func (s staticRoutes) Route(context.Context, string) (*sidecar.Route, error) { return s.r, nil }

func (s staticRoutes) Watch(string, func(*remoting.TopicRouteData, error)) func() { return func() {} }

// FuzzServeClient writes arbitrary bytes to a broker group's port, seeded with the requests the proxy reads fields
// of (sends, whose topic and queue it reads and may rewrite; Pop acks, whose receipt handle or body names a
// group; the requests of group g, in Pop mode on T, that the proxy serves itself: heartbeats, pulls, offsets,
// send-backs, consumer lists and locks) and answers of pushed requests: the proxy neither crashes nor stops serving, and a fresh connection
// is still proxied to the broker.
func FuzzServeClient(f *testing.F) {
	b := simbroker.New(simbroker.Options{Cluster: "c", Name: "broker-a", Topics: []remoting.TopicConfig{{TopicName: "T",
		ReadQueueNums: 2, WriteQueueNums: 2, Perm: remoting.PermRead | remoting.PermWrite}}})
	if err := b.Start(); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { b.Close() })
	data := &remoting.TopicRouteData{
		QueueDatas:  []remoting.QueueData{{BrokerName: "broker-a", ReadQueueNums: 2, WriteQueueNums: 2, Perm: 6}, {BrokerName: "broker-b", ReadQueueNums: 2, WriteQueueNums: 2, Perm: 6}},
		BrokerDatas: []remoting.BrokerData{{Cluster: "c", BrokerName: "broker-a", BrokerAddrs: map[int64]string{0: b.Addr()}}, {Cluster: "c", BrokerName: "broker-b", BrokerAddrs: map[int64]string{0: b.Addr()}}},
	}
	routes := staticRoutes{&sidecar.Route{Topic: "T", Data: data, Send: []translate.Target{
		{BrokerName: "broker-a", Addr: b.Addr(), Weight: 3}, {BrokerName: "broker-b", Addr: b.Addr(), Weight: 1}},
		Pop: map[string]translate.PopMode{"g": {InvisibleTime: time.Second}}}}
	p := New(Options{Listen: "127.0.0.1:0", Routes: routes, MaxFrameSize: 1 << 16})
	if err := p.Start(); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { p.Close() })
	if _, err := p.learn(data); err != nil {
		f.Fatal(err)
	}
	port := p.GroupAddr("broker-b")
	now := strconv.FormatInt(time.Now().UnixMilli(), 10)
	for _, seed := range [][]byte{
		testutil.Frame(f, remoting.SendMessageV2, map[string]string{"a": "pg", "b": "T", "e": "1", "f": "0", "g": now, "h": "0", "i": "", "j": "0"}, []byte("x")),
		testutil.Frame(f, remoting.SendMessage, map[string]string{"producerGroup": "pg", "topic": "T", "queueId": "9"}, []byte("x")),
		testutil.Frame(f, remoting.AckMessage, map[string]string{"consumerGroup": "g", "topic": "T", "queueId": "0", "extraInfo": "0 " + now + " 1000 0 0 broker-a 0 0", "offset": "0"}, nil),
		testutil.Frame(f, remoting.BatchAckMessage, nil, []byte(`{"consumerGroup":"g","brokerName":"broker-a","acks":[]}`)),
		testutil.Frame(f, remoting.HeartBeat, nil, []byte(`{"clientID":"c1","consumerDataSet":[]}`)),
		testutil.Frame(f, remoting.HeartBeat, nil, []byte(`{"clientID":"c1","consumerDataSet":[{"groupName":"g",`+
			`"consumeFromWhere":"CONSUME_FROM_FIRST_OFFSET","subscriptionDataSet":[{"topic":"T"},{"topic":"%RETRY%g"}]}]}`)),
		testutil.Frame(f, remoting.PullMessage, map[string]string{"consumerGroup": "g", "topic": "T", "queueId": "0", "queueOffset": "0",
			"maxMsgNums": "32", "sysFlag": "3", "commitOffset": "2", "suspendTimeoutMillis": "50", "subscription": "*"}, nil),
		testutil.Frame(f, remoting.QueryConsumerOffset, map[string]string{"consumerGroup": "g", "topic": "T", "queueId": "1"}, nil),
		testutil.Frame(f, remoting.UpdateConsumerOffset, map[string]string{"consumerGroup": "g", "topic": "T", "queueId": "0", "commitOffset": "5"}, nil),
		testutil.Frame(f, remoting.ConsumerSendMsgBack, map[string]string{"group": "g", "originTopic": "T", "offset": "17", "delayLevel": "99"}, nil),
		testutil.Frame(f, remoting.GetConsumerListByGroup, map[string]string{"consumerGroup": "g"}, nil),
		testutil.Frame(f, remoting.LockBatchMQ, nil, []byte(`{"consumerGroup":"g","clientId":"c1","mqSet":[{"topic":"T","brokerName":"broker-b","queueId":0}]}`)),
		append(testutil.Frame(f, remoting.GetMaxOffset, map[string]string{"topic": "T", "queueId": "0"}, nil)[:8], 0xff),
		{0, 0, 0, 8, 1, 0, 0, 4, 0xff, 0xff, 0xff, 0xff},
		{},
	} {
		f.Add(seed)
	}
	probe := testutil.Frame(f, remoting.GetMaxOffset, map[string]string{"topic": "T", "queueId": "0"}, nil)

	f.Fuzz(func(t *testing.T, data []byte) {
		nc, err := net.DialTimeout("tcp", port, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = nc.SetDeadline(time.Now().Add(time.Second))
		_, _ = nc.Write(data)
		nc.Close()

		fresh, err := net.DialTimeout("tcp", port, time.Second)
		if err != nil {
			t.Fatalf("the proxy stopped accepting: %v", err)
		}
		defer fresh.Close()
		_ = fresh.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := fresh.Write(probe); err != nil {
			t.Fatal(err)
		}
		resp, err := remoting.NewReader(fresh, 0).Read()
		if err != nil || resp.Code != remoting.Success {
			t.Fatalf("a fresh connection is not proxied: %v %v", resp, err)
		}
	})
}

// FuzzPopToPull gives the reading of a broker's Pop answer arbitrary headers and bodies, seeded with a real answer
// of the simulated broker: it never panics, and what it accepts is a pull answer the sidecar's offsets number from
// next, one receipt handle per message.
func FuzzPopToPull(f *testing.F) {
	b := simbroker.New(simbroker.Options{Cluster: "c", Name: "broker-a", Topics: []remoting.TopicConfig{{TopicName: "T",
		ReadQueueNums: 1, WriteQueueNums: 1, Perm: remoting.PermRead | remoting.PermWrite}}})
	if err := b.Start(); err != nil {
		f.Fatal(err)
	}
	defer b.Close()
	nc, err := net.Dial("tcp", b.Addr())
	if err != nil {
		f.Fatal(err)
	}
	defer nc.Close()
	r := remoting.NewReader(nc, 0)
	call := func(code int32, ext map[string]string, body []byte) *remoting.Command {
		if _, err := nc.Write(testutil.Frame(f, code, ext, body)); err != nil {
			f.Fatal(err)
		}
		resp, err := r.Read()
		if err != nil {
			f.Fatal(err)
		}
		return resp
	}
	for _, body := range []string{"m0", "m1"} {
		call(remoting.SendMessage, map[string]string{"producerGroup": "pg", "topic": "T", "queueId": "0", "sysFlag": "0",
			"bornTimestamp": "0", "flag": "0", "properties": "", "reconsumeTimes": "0"}, []byte(body))
	}
	resp := call(remoting.PopMessage, map[string]string{"consumerGroup": "g", "topic": "T", "queueId": "0", "maxMsgNums": "32",
		"invisibleTime": "1000", "pollTime": "0", "bornTime": strconv.FormatInt(time.Now().UnixMilli(), 10), "initMode": "0", "order": "false"}, nil)
	if resp.Code != remoting.Success {
		f.Fatalf("pop: %d %s", resp.Code, resp.Remark)
	}
	header := func(c *remoting.Command) string {
		return c.Ext("popTime") + "|" + c.Ext("invisibleTime") + "|" + c.Ext("reviveQid") + "|" + c.Ext("restNum") + "|" +
			c.Ext("startOffsetInfo") + "|" + c.Ext("msgOffsetInfo") + "|" + c.Ext("orderCountInfo")
	}
	if a, err := popToPull(resp, "broker-a", 3, false, 40); err != nil || len(a.handed) != 2 {
		f.Fatalf("the broker's own answer: %d handed out, %v", len(a.handed), err)
	}
	f.Add(header(resp), resp.Body, false)
	f.Add(header(resp), resp.Body, true)
	f.Add("1|1|999|0|0 0 0|0 0 0|0 0 0", resp.Body[:len(resp.Body)/2], true)
	f.Fuzz(func(t *testing.T, h string, body []byte, ordered bool) {
		fields := strings.SplitN(h, "|", 7)
		for len(fields) < 7 {
			fields = append(fields, "")
		}
		in := &remoting.Command{Code: remoting.Success, Body: body, ExtFields: map[string]string{"popTime": fields[0],
			"invisibleTime": fields[1], "reviveQid": fields[2], "restNum": fields[3], "startOffsetInfo": fields[4],
			"msgOffsetInfo": fields[5], "orderCountInfo": fields[6]}}
		a, err := popToPull(in, "broker-a", 3, ordered, 40)
		if err != nil {
			return
		}
		msgs, err := message.DecodeExts(a.body)
		if err != nil || len(msgs) != len(a.handed) {
			t.Fatalf("the pull body holds %d messages (%v), %d handed out", len(msgs), err, len(a.handed))
		}
		for i, m := range msgs {
			if m.QueueOffset != 40+int64(i) || a.handed[i].offset != m.QueueOffset || m.QueueID != 3 || a.handed[i].handle.BrokerName != "broker-a" {
				t.Fatalf("message %d: offset %d queue %d, handed %+v", i, m.QueueOffset, m.QueueID, a.handed[i])
			}
		}
	})
}
