package interop

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"

	"github.com/rocketpilot/rocketpilot/remoting"
	"github.com/rocketpilot/rocketpilot/simbroker"
)

// TestGoClientOffsetQueriesAndRetries has the official Go client exercise the broker requests the acceptance
// test's defaults do not: a new group consuming from the last offset asks each queue's max offset
// (GET_MAX_OFFSET 30), one consuming from a timestamp searches each queue by time (SEARCH_OFFSET_BY_TIMESTAMP 29),
// and a consumer that asks for a message again sends it back (CONSUMER_SEND_MSG_BACK 36), to receive it once more
// from its group's retry topic with reconsume times 1. Straight at the brokers, and through a sidecar.
func TestGoClientOffsetQueriesAndRetries(t *testing.T) {
	// Short delay levels: a message sent back waits level 3's delay before it is delivered again. A small queue
	// bound: for a group without an offset the broker answers 0 while a queue's first message is still there
	// (ConsumerManageProcessor.queryConsumerOffset), so the client asks 29 or 30 only once retention removed it.
	opts := simbroker.DemoOptions{QueueCapacity: 64,
		DelayLevels: []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 30 * time.Millisecond, 40 * time.Millisecond}}
	t.Run("direct", func(t *testing.T) {
		c := startSimClusterWith(t, opts)
		offsetsAndRetries(t, c, c.ns.Addr())
	})
	t.Run("through a sidecar", func(t *testing.T) {
		c := startSimClusterWith(t, opts)
		offsetsAndRetries(t, c, startSidecar(t, c))
	})
}

func offsetsAndRetries(t *testing.T, c *simCluster, nameServer string) {
	clientErrors(t)
	p := startGoProducer(t, nameServer)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sendAll := func(prefix string, n int) {
		t.Helper()
		for i := range n {
			id := fmt.Sprintf("%s-%03d", prefix, i)
			if res, err := p.SendSync(ctx, goMessage(id, prefix)); err != nil || res.Status != primitive.SendOK {
				t.Fatalf("SendSync %s: %v %v", id, res, err)
			}
		}
	}
	requests := func(code int32) (n int64) {
		for _, b := range c.demo.Brokers {
			n += b.RequestCount(code)
		}
		return n
	}
	received := func(in *goInbox, prefix string) int {
		return in.distinct(func(id string) bool { return strings.HasPrefix(id, prefix+"-") })
	}

	// 80 old messages a queue, in batches of 10: past the bound of 64, so every queue's first ones are gone.
	for b := range 64 {
		msgs := make([]*primitive.Message, 10)
		for i := range msgs {
			msgs[i] = goMessage(fmt.Sprintf("old-%03d", b*10+i), "old")
		}
		if res, err := p.SendSync(ctx, msgs...); err != nil || res.Status != primitive.SendOK {
			t.Fatalf("batch %d: %v %v", b, res, err)
		}
	}
	cutoff := time.Now().Truncate(time.Second).Add(time.Second) // the next whole second: the timestamp format's unit
	time.Sleep(time.Until(cutoff) + 10*time.Millisecond)

	// From the last offset: the new group asks each queue's end (30) and receives only what is sent after.
	maxBefore := requests(remoting.GetMaxOffset)
	last := &goInbox{}
	startPushConsumer(t, nameServer, uniqueName("interop-from-last"), goTopic, consumer.MessageSelector{Type: consumer.TAG, Expression: "*"},
		last.consume, consumer.WithConsumeFromWhere(consumer.ConsumeFromLastOffset))
	if !waitFor(20*time.Second, func() bool { return requests(remoting.GetMaxOffset)-maxBefore >= 8 }) {
		t.Fatalf("the consumer from the last offset asked %d queues' max offset, want all 8", requests(remoting.GetMaxOffset)-maxBefore)
	}
	time.Sleep(200 * time.Millisecond) // its first pulls are out: what is sent now is after its start

	// From a timestamp: the group searches each queue (29) for the cutoff, between the old and the new messages.
	searchBefore := requests(remoting.SearchOffsetByTimestamp)
	byTime := &goInbox{}
	startPushConsumer(t, nameServer, uniqueName("interop-from-time"), goTopic, consumer.MessageSelector{Type: consumer.TAG, Expression: "*"},
		byTime.consume, consumer.WithConsumeFromWhere(consumer.ConsumeFromTimestamp),
		consumer.WithConsumeTimestamp(cutoff.UTC().Format("20060102150405")))
	if !waitFor(20*time.Second, func() bool { return requests(remoting.SearchOffsetByTimestamp)-searchBefore >= 8 }) {
		t.Fatalf("the consumer from a timestamp searched %d queues, want all 8", requests(remoting.SearchOffsetByTimestamp)-searchBefore)
	}

	// Sent back once: every "new" message is asked for again on its first delivery (36). (From the last offset
	// too: from the first, its pulls would start below the queues' first kept offset and wait for a rebalance.)
	retried := &goInbox{}
	firsts := map[string]bool{}
	group := uniqueName("interop-retry")
	// The group's retry topic exists before the consumer starts, as an existing group's does. A new group's is
	// created by its first heartbeat, after the client first asked its route; the client asks again only at its
	// next rebalance (20 s) or route poll (30 s), and through a sidecar the control plane learns it a poll later.
	retryTopic := simbroker.RetryTopicPrefix + group
	for _, b := range c.demo.Brokers {
		if b.ID() == 0 {
			b.SetTopic(remoting.TopicConfig{TopicName: retryTopic, ReadQueueNums: 1, WriteQueueNums: 1, Perm: remoting.PermRead | remoting.PermWrite})
		}
	}
	if !waitFor(10*time.Second, func() bool {
		return brokerCall(t, nameServer, remoting.GetRouteInfoByTopic, map[string]string{"topic": retryTopic}).Code == remoting.Success
	}) {
		t.Fatalf("no route for %s at %s", retryTopic, nameServer)
	}
	startPushConsumer(t, nameServer, group, goTopic, consumer.MessageSelector{Type: consumer.TAG, Expression: "new"},
		func(ctx context.Context, msgs ...*primitive.MessageExt) (consumer.ConsumeResult, error) {
			retried.consume(ctx, msgs...)
			again := false
			retried.mu.Lock()
			for _, m := range msgs {
				if m.ReconsumeTimes == 0 && !firsts[m.GetKeys()] {
					firsts[m.GetKeys()], again = true, true
				}
			}
			retried.mu.Unlock()
			if again {
				return consumer.ConsumeRetryLater, nil
			}
			return consumer.ConsumeSuccess, nil
		}, consumer.WithConsumeFromWhere(consumer.ConsumeFromLastOffset), consumer.WithConsumeMessageBatchMaxSize(1))
	if !waitFor(20*time.Second, func() bool { return requests(remoting.GetMaxOffset)-maxBefore >= 16 }) {
		t.Fatalf("the retrying consumer did not ask its queues' max offset")
	}
	time.Sleep(200 * time.Millisecond)

	sendAll("new", 20)
	if !waitFor(20*time.Second, func() bool { return received(last, "new") == 20 && received(byTime, "new") == 20 }) {
		t.Fatalf("received new messages: %d from the last offset, %d from the timestamp; want 20 each",
			received(last, "new"), received(byTime, "new"))
	}
	if n := received(last, "old"); n != 0 {
		t.Errorf("the consumer from the last offset received %d messages sent before it started", n)
	}
	if n := received(byTime, "old"); n != 0 {
		t.Errorf("the consumer from the timestamp received %d messages stored before it", n)
	}
	sendBacks := func() int64 { return requests(remoting.ConsumerSendMsgBack) }
	again := func() int {
		n := 0
		for _, d := range retried.snapshot() {
			if strings.HasPrefix(d.id, "new-") && d.reconsume == 1 {
				n++
			}
		}
		return n
	}
	// The bound is generous: on a loaded 2-core machine a retry round has taken more than 20 s (once in many runs).
	if !waitFor(45*time.Second, func() bool { return again() >= 20 }) {
		t.Fatalf("%d of the 20 messages sent back came again with reconsume times 1 (%d sends back, %d deliveries, %d min-offset queries)", again(), sendBacks(), len(retried.snapshot()), requests(remoting.GetMinOffset))
	}
	if n := sendBacks(); n < 20 {
		t.Fatalf("the brokers received %d CONSUMER_SEND_MSG_BACK, want 20", n)
	}
}
