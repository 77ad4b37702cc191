package interop

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/admin"
	rmqerrors "github.com/apache/rocketmq-client-go/v2/errors"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/producer"

	"github.com/rocketpilot/rocketpilot/nameserver/embedded"
	"github.com/rocketpilot/rocketpilot/remoting"
)

// clientTimeout bounds every call into rocketmq-client-go.
const clientTimeout = 15 * time.Second

// TestGoAdminReadsEmbeddedNameServer drives the official Go client's admin API (206 and 105) against the embedded
// NameServer, through a spy that records the frames. rocketmq-client-go sends request version 317, so it gets the
// legacy fastjson route body with bare numeric broker-id keys, which it must decode. Both header serializations
// the server can be configured with are covered: the client must decode either.
func TestGoAdminReadsEmbeddedNameServer(t *testing.T) {
	for _, header := range []remoting.SerializeType{remoting.SerializeJSON, remoting.SerializeRocketMQ} {
		t.Run(header.String(), func(t *testing.T) {
			clientErrors(t)
			ns := startNameServer(t, embedded.Options{HeaderType: header}, true)
			sp := startSpy(t, ns.Addr())
			adm := startAdmin(t, sp.Addr())
			ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
			defer cancel()

			t.Run("206 all topics", func(t *testing.T) {
				list, err := adm.FetchAllTopicList(ctx)
				if err != nil {
					t.Fatalf("FetchAllTopicList: %v", err)
				}
				got := slices.Sorted(slices.Values(list.TopicList))
				want := slices.Sorted(slices.Values(ns.Topics()))
				if len(want) < 100 {
					t.Fatalf("demo data set has %d topics, want at least 100", len(want))
				}
				if !slices.Equal(got, want) {
					t.Fatalf("FetchAllTopicList returned %d topics, the NameServer holds %d:\n got %v\nwant %v",
						len(got), len(want), got, want)
				}
				if n := ns.RequestCount(remoting.GetAllTopicListFromNameServer); n != 1 {
					t.Errorf("NameServer saw %d requests with code 206, want 1", n)
				}
				rts := sp.roundTrips(remoting.GetAllTopicListFromNameServer, nil)
				if len(rts) != 1 || rts[0].resp == nil || rts[0].resp.HeaderType != header {
					t.Errorf("spy: 206 round trips %+v, want one answered with a %s header", rts, header)
				}
			})

			t.Run("105 TopicTest", func(t *testing.T) {
				mqs, err := adm.FetchPublishMessageQueues(ctx, embedded.DemoTopic)
				if err != nil {
					t.Fatalf("FetchPublishMessageQueues(%s): %v", embedded.DemoTopic, err)
				}
				var got []string
				for _, mq := range mqs {
					if mq.Topic != embedded.DemoTopic {
						t.Errorf("queue %v has topic %q", mq, mq.Topic)
					}
					got = append(got, fmt.Sprintf("%s/%d", mq.BrokerName, mq.QueueId))
				}
				sort.Strings(got)
				want := []string{"broker-a/0", "broker-a/1", "broker-a/2", "broker-a/3",
					"broker-b/0", "broker-b/1", "broker-b/2", "broker-b/3"}
				if !slices.Equal(got, want) {
					t.Fatalf("publish queues of %s = %v, want %v", embedded.DemoTopic, got, want)
				}

				// The broker datas were decoded too: FetchClusterList reads their cluster field (another 105).
				clusters, err := adm.FetchClusterList(embedded.DemoTopic)
				if err != nil {
					t.Fatalf("FetchClusterList(%s): %v", embedded.DemoTopic, err)
				}
				if !slices.Equal(clusters, []string{embedded.DemoCluster}) {
					t.Errorf("clusters of %s = %v, want [%s]", embedded.DemoTopic, clusters, embedded.DemoCluster)
				}

				// What went over the wire: version 317 without acceptStandardJsonOnly, answered in the legacy dialect.
				rts := sp.roundTrips(remoting.GetRouteInfoByTopic, topicIs(embedded.DemoTopic))
				if len(rts) != 2 {
					t.Fatalf("spy saw %d 105 requests for %s, want 2 (queues, clusters)", len(rts), embedded.DemoTopic)
				}
				for _, rt := range rts {
					if rt.req.Version != remoting.VersionClientGo || rt.req.Ext("acceptStandardJsonOnly") != "" {
						t.Errorf("105 request version %d ext %v: expected rocketmq-client-go's version %d without acceptStandardJsonOnly",
							rt.req.Version, rt.req.ExtFields, remoting.VersionClientGo)
					}
					if rt.resp == nil || rt.resp.Code != remoting.Success {
						t.Fatalf("105 response %v, want SUCCESS", rt.resp)
					}
					if rt.resp.HeaderType != header {
						t.Errorf("105 response header %s, want %s", rt.resp.HeaderType, header)
					}
					assertLegacyRouteBody(t, rt.resp.Body)
				}
			})

			t.Run("105 unknown topic", func(t *testing.T) {
				const topic = "interop-no-such-topic"
				before := ns.RequestCount(remoting.GetRouteInfoByTopic)
				mqs, err := adm.FetchPublishMessageQueues(ctx, topic)
				if !errors.Is(err, rmqerrors.ErrTopicNotExist) {
					t.Fatalf("FetchPublishMessageQueues(%s) = %v, %v; want ErrTopicNotExist", topic, mqs, err)
				}
				if n := ns.RequestCount(remoting.GetRouteInfoByTopic) - before; n != 1 {
					t.Errorf("NameServer saw %d more 105 requests, want 1", n)
				}
				rts := sp.roundTrips(remoting.GetRouteInfoByTopic, topicIs(topic))
				if len(rts) != 1 || rts[0].resp == nil || rts[0].resp.Code != remoting.TopicNotExist {
					t.Errorf("spy: 105 for %s: %+v, want one answered TOPIC_NOT_EXIST (17)", topic, rts)
				}
			})
		})
	}
}

// startAdmin returns an official Go admin client whose NameServer is addr, and closes it when the test ends.
func startAdmin(t testing.TB, addr string) admin.Admin {
	t.Helper()
	adm, err := admin.NewAdmin(admin.WithResolver(primitive.NewPassthroughResolver([]string{addr})))
	if err != nil {
		t.Fatalf("NewAdmin: %v", err)
	}
	t.Cleanup(func() { _ = adm.Close() })
	return adm
}

// assertLegacyRouteBody checks a 105 body is fastjson's legacy form: broker ids as bare numeric keys, which
// encoding/json rejects.
func assertLegacyRouteBody(t *testing.T, body []byte) {
	t.Helper()
	if !bytes.Contains(body, []byte(`"brokerAddrs":{0:"`)) || bytes.Contains(body, []byte(`"brokerAddrs":{"0":`)) {
		t.Errorf("105 body is not the legacy fastjson form with bare broker-id keys:\n%s", body)
	}
}

// interopGroups registers two broker groups, interop-a and interop-b, whose masters (id 0) are fake brokers and
// whose slaves (id 1) share a third fake broker that must never receive a send.
func interopGroups(t *testing.T, ns *embedded.NameServer) (a, b, slave *fakeBroker) {
	t.Helper()
	a, b, slave = startFakeBroker(t), startFakeBroker(t), startFakeBroker(t)
	for name, master := range map[string]*fakeBroker{"interop-a": a, "interop-b": b} {
		ns.RegisterBroker(embedded.Broker{Cluster: "InteropCluster", Name: name, Zone: "zone-interop",
			Addrs: map[int64]string{0: master.Addr(), 1: slave.Addr()}})
	}
	return a, b, slave
}

func queues(broker string, n, perm int32) remoting.QueueData {
	return remoting.QueueData{BrokerName: broker, ReadQueueNums: n, WriteQueueNums: n, Perm: perm}
}

// syncSender is the part of the producer API the tests use.
type syncSender interface {
	SendSync(ctx context.Context, msgs ...*primitive.Message) (*primitive.SendResult, error)
}

// startProducer starts an official Go producer that resolves routes through nameServer and never retries, and
// shuts it down, within a bound, when the test ends.
func startProducer(t *testing.T, nameServer string) syncSender {
	t.Helper()
	p, err := producer.NewDefaultProducer(
		producer.WithNameServer([]string{nameServer}),
		producer.WithRetry(0),
		producer.WithGroupName("interop-producer"),
		// The client library shares one client per instance name in the process: keep tests apart.
		producer.WithInstanceName(fmt.Sprintf("interop-%d", time.Now().UnixNano())),
		producer.WithSendMsgTimeout(5*time.Second),
	)
	if err != nil {
		t.Fatalf("NewDefaultProducer: %v", err)
	}
	if err := p.Start(); err != nil {
		t.Fatalf("producer Start: %v", err)
	}
	t.Cleanup(func() {
		done := make(chan error, 1)
		go func() { done <- p.Shutdown() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("producer Shutdown: %v", err)
			}
		case <-time.After(clientTimeout):
			t.Errorf("producer Shutdown did not return within %v", clientTimeout)
		}
	})
	return p
}

// sendAll sends n messages synchronously to topic and checks each send result against what the fake brokers
// received. It returns the sends each broker group's master received.
func sendAll(t *testing.T, p syncSender, topic string, n int, masters map[string]*fakeBroker) map[string][]receivedSend {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	defer cancel()
	for i := range n {
		body := "interop message " + strconv.Itoa(i)
		msg := primitive.NewMessage(topic, []byte(body)).WithTag("interop").WithKeys([]string{"key-" + strconv.Itoa(i)})
		res, err := p.SendSync(ctx, msg)
		if err != nil {
			t.Fatalf("SendSync #%d: %v", i, err)
		}
		if res.Status != primitive.SendOK {
			t.Fatalf("SendSync #%d: status %v, want SendOK", i, res.Status)
		}
		master, ok := masters[res.MessageQueue.BrokerName]
		if !ok {
			t.Fatalf("SendSync #%d went to broker group %q, not one of the route's", i, res.MessageQueue.BrokerName)
		}
		sends := master.Sends()
		if len(sends) == 0 {
			t.Fatalf("SendSync #%d reports broker group %s, whose master received no send", i, res.MessageQueue.BrokerName)
		}
		got := sends[len(sends)-1]
		if got.Body != body || got.Topic != topic || got.BrokerName != res.MessageQueue.BrokerName {
			t.Errorf("master of %s received %+v, want body %q for topic %s", res.MessageQueue.BrokerName, got, body, topic)
		}
		if got.Code != codeSendMessage && got.Code != codeSendMessageV2 {
			t.Errorf("send arrived with request code %d", got.Code)
		}
		if got.Group != "interop-producer" || got.Properties["TAGS"] != "interop" || got.Properties["KEYS"] != "key-"+strconv.Itoa(i) {
			t.Errorf("send header: group %q, properties %q", got.Group, got.Properties)
		}
		// The producer decoded the fake broker's SendMessageResponseHeader.
		if res.MessageQueue.QueueId != got.QueueID || res.QueueOffset != got.QueueOffset || res.OffsetMsgID != got.MsgID {
			t.Errorf("send result queue %d offset %d msgId %s; the request named queue %d and the broker answered offset %d msgId %s",
				res.MessageQueue.QueueId, res.QueueOffset, res.OffsetMsgID, got.QueueID, got.QueueOffset, got.MsgID)
		}
		if uniq := got.Properties["UNIQ_KEY"]; uniq == "" || res.MsgID != uniq {
			t.Errorf("send result MsgID %q, the message's UNIQ_KEY property %q", res.MsgID, uniq)
		}
	}
	out := make(map[string][]receivedSend)
	for name, m := range masters {
		out[name] = m.Sends()
	}
	return out
}

// queueIDs returns the sorted queue ids of sends, all of which must be for topic.
func queueIDs(t *testing.T, topic string, sends []receivedSend) []int {
	t.Helper()
	ids := make([]int, 0, len(sends))
	for _, s := range sends {
		if s.Topic != topic {
			t.Errorf("send for topic %q, want %q", s.Topic, topic)
		}
		ids = append(ids, s.QueueID)
	}
	slices.Sort(ids)
	return ids
}

// TestGoProducerSendsViaEmbeddedRoute has the official Go producer resolve TopicTest through the embedded
// NameServer (105) and send to the masters it names: fake brokers on loopback. With the default round-robin
// selector over the 8 writable queues, 8 sends cover every queue of both groups exactly once.
func TestGoProducerSendsViaEmbeddedRoute(t *testing.T) {
	clientErrors(t)
	ns := startNameServer(t, embedded.Options{}, false)
	a, b, slave := interopGroups(t, ns)
	ns.SetTopic(embedded.DemoTopic, queues("interop-a", 4, 6), queues("interop-b", 4, 6))
	p := startProducer(t, ns.Addr())

	got := sendAll(t, p, embedded.DemoTopic, 8, map[string]*fakeBroker{"interop-a": a, "interop-b": b})

	for _, name := range []string{"interop-a", "interop-b"} {
		if ids := queueIDs(t, embedded.DemoTopic, got[name]); !slices.Equal(ids, []int{0, 1, 2, 3}) {
			t.Errorf("master of %s received sends for queues %v, want each of 0..3 once", name, ids)
		}
	}
	if n := len(slave.Sends()); n != 0 {
		t.Errorf("the slave (broker id 1) received %d sends; a producer must only write to masters", n)
	}
	if n := ns.RequestCount(remoting.GetRouteInfoByTopic); n < 1 {
		t.Errorf("the NameServer saw %d route requests (105); the producer cannot have resolved the topic through it", n)
	}
}

// TestGoProducerSkipsReadOnlyGroup gives TopicTest a writable group and a read-only one (perm 4): every send must
// go to the writable group's master.
func TestGoProducerSkipsReadOnlyGroup(t *testing.T) {
	clientErrors(t)
	ns := startNameServer(t, embedded.Options{}, false)
	a, b, slave := interopGroups(t, ns)
	ns.SetTopic(embedded.DemoTopic, queues("interop-a", 4, 6), queues("interop-b", 4, 4))
	p := startProducer(t, ns.Addr())

	got := sendAll(t, p, embedded.DemoTopic, 8, map[string]*fakeBroker{"interop-a": a, "interop-b": b})

	if ids := queueIDs(t, embedded.DemoTopic, got["interop-a"]); !slices.Equal(ids, []int{0, 0, 1, 1, 2, 2, 3, 3}) {
		t.Errorf("master of interop-a received sends for queues %v, want each of 0..3 twice", ids)
	}
	if n := len(b.Sends()) + len(slave.Sends()); n != 0 {
		t.Errorf("the read-only group received %d sends", n)
	}
}
