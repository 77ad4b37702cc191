package interop

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/producer"

	"github.com/rocketpilot/rocketpilot/remoting"
	"github.com/rocketpilot/rocketpilot/simbroker"
)

// The mix of send modes in TestGoClientProducesAndConsumesOnSimBrokers: 10,000 messages in all.
const (
	syncSends    = 3000
	asyncSends   = 3000
	onewaySends  = 1000
	batchSends   = 2000 // in batches of goBatchSize
	goBatchSize  = 10
	orderedSends = 1000 // through the hash selector, orderedKeys sharding keys in turn
	orderedKeys  = 10
	totalSends   = syncSends + asyncSends + onewaySends + batchSends + orderedSends

	goBodySize = 1024
	goTopic    = simbroker.DemoTopic
)

// goSent is what the test knows of a message it sent: its mode (also its tag) and, when the send result
// said, the queue and offset it went to.
type goSent struct {
	mode   string
	queue  string // "" for one-way sends
	offset int64  // -1 unless a single send's result gave it
	key    string // ordered sends: the sharding key
	seq    int    // ordered sends: the position in the key's sequence
}

// goBody is the body of the message with an id: about 1 KiB, derived from the id so that any corruption shows.
func goBody(id string) []byte {
	b := make([]byte, 0, goBodySize)
	b = append(b, id...)
	for i := 0; len(b) < goBodySize; i++ {
		b = append(b, byte('a'+(len(id)+i)%26))
	}
	return b
}

func goMessage(id, mode string) *primitive.Message {
	return primitive.NewMessage(goTopic, goBody(id)).WithTag(mode).WithKeys([]string{id})
}

// goLedger records the messages a test sent, by id. It is safe for concurrent use (async callbacks).
type goLedger struct {
	mu   sync.Mutex
	sent map[string]*goSent
}

func (l *goLedger) add(id string, m *goSent) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sent == nil {
		l.sent = map[string]*goSent{}
	}
	l.sent[id] = m
}

func (l *goLedger) get(id string) *goSent {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sent[id]
}

// produce sends totalSends messages to TopicTest in every mode the producer has, failing the test at the first
// send that does not succeed.
func produceGo(t *testing.T, nameServer string) *goLedger {
	t.Helper()
	l := &goLedger{}
	p := startGoProducer(t, nameServer)
	ordered := startGoProducer(t, nameServer, producer.WithQueueSelector(producer.NewHashQueueSelector()))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id := func(i int) string { return fmt.Sprintf("m-%05d", i) }
	checkResult := func(what string, res *primitive.SendResult, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if res.Status != primitive.SendOK || res.MessageQueue == nil || res.MessageQueue.Topic != goTopic {
			t.Fatalf("%s: result %v", what, res)
		}
	}
	n := 0

	// Sync sends, round-robin over the 8 queues.
	for range syncSends {
		msg := goMessage(id(n), "sync")
		res, err := p.SendSync(ctx, msg)
		checkResult("SendSync "+id(n), res, err)
		l.add(id(n), &goSent{mode: "sync", queue: goQueueName(res.MessageQueue), offset: res.QueueOffset})
		n++
	}

	// Async sends, at most 64 in flight.
	var wg sync.WaitGroup
	var asyncErr atomic.Value
	inflight := make(chan struct{}, 64)
	for range asyncSends {
		msgID := id(n)
		inflight <- struct{}{}
		wg.Add(1)
		err := p.SendAsync(ctx, func(_ context.Context, res *primitive.SendResult, err error) {
			defer func() { <-inflight; wg.Done() }()
			switch {
			case err != nil:
				asyncErr.CompareAndSwap(nil, fmt.Sprintf("SendAsync %s: %v", msgID, err))
			case res.Status != primitive.SendOK || res.MessageQueue == nil:
				asyncErr.CompareAndSwap(nil, fmt.Sprintf("SendAsync %s: result %v", msgID, res))
			default:
				l.add(msgID, &goSent{mode: "async", queue: goQueueName(res.MessageQueue), offset: res.QueueOffset})
			}
		}, goMessage(msgID, "async"))
		if err != nil {
			t.Fatalf("SendAsync %s: %v", msgID, err)
		}
		n++
	}
	if !waitGroupWithin(&wg, 20*time.Second) {
		t.Fatalf("async send callbacks did not all come within 20s")
	}
	if e := asyncErr.Load(); e != nil {
		t.Fatal(e)
	}

	// One-way sends: no result, the consumer is the only proof.
	for range onewaySends {
		if err := p.SendOneWay(ctx, goMessage(id(n), "oneway")); err != nil {
			t.Fatalf("SendOneWay %s: %v", id(n), err)
		}
		l.add(id(n), &goSent{mode: "oneway", offset: -1})
		n++
	}

	// Batch sends: SendSync with several messages is one SEND_BATCH_MESSAGE (320) to one queue.
	for range batchSends / goBatchSize {
		msgs := make([]*primitive.Message, goBatchSize)
		for j := range msgs {
			msgs[j] = goMessage(id(n+j), "batch")
		}
		res, err := p.SendSync(ctx, msgs...)
		checkResult("batch SendSync from "+id(n), res, err)
		for j := range msgs {
			// The result's offset is the first message's; the rest follow it in the same queue.
			l.add(id(n+j), &goSent{mode: "batch", queue: goQueueName(res.MessageQueue), offset: res.QueueOffset + int64(j)})
		}
		n += goBatchSize
	}

	// Ordered sends: the hash selector maps each sharding key to one queue.
	for i := range orderedSends {
		key := fmt.Sprintf("order-key-%d", i%orderedKeys)
		msg := goMessage(id(n), "ordered").WithShardingKey(key)
		msg.WithProperty("interopSeq", strconv.Itoa(i/orderedKeys))
		res, err := ordered.SendSync(ctx, msg)
		checkResult("ordered SendSync "+id(n), res, err)
		l.add(id(n), &goSent{mode: "ordered", queue: goQueueName(res.MessageQueue), offset: res.QueueOffset,
			key: key, seq: i / orderedKeys})
		n++
	}
	if n != totalSends || len(l.sent) != totalSends {
		t.Fatalf("sent %d messages, recorded %d, want %d", n, len(l.sent), totalSends)
	}
	return l
}

func waitGroupWithin(wg *sync.WaitGroup, bound time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(bound):
		return false
	}
}

// goDelivery is one message a consumer callback received.
type goDelivery struct {
	id, tag, queue string
	offset         int64
	body           []byte
	reconsume      int32
	at             int64 // Unix ns, when a consumer in a child process handed it over (0 in this process)
}

// goInbox records what a push consumer received, by id, in arrival order.
type goInbox struct {
	mu    sync.Mutex
	all   []goDelivery
	count map[string]int
}

func (in *goInbox) consume(_ context.Context, msgs ...*primitive.MessageExt) (consumer.ConsumeResult, error) {
	for _, m := range msgs {
		d := goDelivery{id: m.GetKeys(), tag: m.GetTags(), offset: m.QueueOffset, body: m.Body, reconsume: m.ReconsumeTimes}
		if m.Queue != nil {
			d.queue = goQueueName(m.Queue)
		}
		in.add(d)
	}
	return consumer.ConsumeSuccess, nil
}

func (in *goInbox) add(d goDelivery) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.count == nil {
		in.count = map[string]int{}
	}
	in.all = append(in.all, d)
	in.count[d.id]++
}

// distinct is how many different ids matching keep were received.
func (in *goInbox) distinct(keep func(string) bool) int {
	in.mu.Lock()
	defer in.mu.Unlock()
	n := 0
	for id := range in.count {
		if keep(id) {
			n++
		}
	}
	return n
}

func (in *goInbox) snapshot() []goDelivery {
	in.mu.Lock()
	defer in.mu.Unlock()
	return slices.Clone(in.all)
}

func anyID(string) bool { return true }

// TestGoClientProducesAndConsumesOnSimBrokers is the broker's acceptance with the official Go client, over TCP on
// loopback, against the embedded NameServer and the simulated demo brokers registered in it: 10,000 messages of
// about 1 KiB sent in every mode (sync, async, one-way, batch, ordered through a hash selector) are all received,
// intact, by a clustering push consumer; an orderly consumer receives the ordered ones in order; and a restarted
// consumer of the first group resumes from the offsets the broker kept instead of receiving everything again.
func TestGoClientProducesAndConsumesOnSimBrokers(t *testing.T) {
	c := startSimCluster(t)
	goClientAcceptance(t, c, c.ns.Addr())
}

// goClientAcceptance runs the Go client's acceptance against the cluster's brokers, the clients given nameServer
// as their NameServer address: the embedded NameServer itself, or a sidecar in front of everything.
func goClientAcceptance(t *testing.T, c *simCluster, nameServer string) {
	clientErrors(t)
	start := time.Now()
	sent := produceGo(t, nameServer)
	t.Logf("sent %d messages (%d sync, %d async, %d one-way, %d in batches of %d, %d ordered) in %v",
		totalSends, syncSends, asyncSends, onewaySends, batchSends, goBatchSize, orderedSends, time.Since(start).Round(time.Millisecond))

	// Every message reached a master; none is stored twice (the producer never retries).
	var stored int64
	for _, name := range []string{"broker-a", "broker-b"} {
		for q := range 4 {
			stored += maxOffset(t, c.master(t, name), goTopic, q)
		}
	}
	if stored != totalSends {
		t.Fatalf("the masters hold %d messages of %s, %d were sent", stored, goTopic, totalSends)
	}

	group := uniqueName("interop-sim-push")
	in := &goInbox{}
	var first *goPushConsumer
	t.Run("push consumer receives every message", func(t *testing.T) {
		consumeStart := time.Now()
		first = startPushConsumer(t, nameServer, group, goTopic, consumer.MessageSelector{Type: consumer.TAG, Expression: "*"}, in.consume)
		if !waitFor(30*time.Second, func() bool { return in.distinct(anyID) == totalSends }) {
			t.Errorf("after 30s the push consumer has received %d of %d messages", in.distinct(anyID), totalSends)
		}
		got := in.snapshot()
		t.Logf("received %d deliveries of %d messages in %v", len(got), in.distinct(anyID), time.Since(consumeStart).Round(time.Millisecond))
		checkGoDeliveries(t, sent, got, nil)
	})

	t.Run("orderly consumer keeps each sharding key's order", func(t *testing.T) {
		// In a child process: the client's orderly consumer has a data race of its own (see orderlyconsumer).
		ordered := startOrderlyConsumer(t, nameServer, uniqueName("interop-sim-orderly"), goTopic, "ordered")
		if !waitFor(30*time.Second, func() bool { return ordered.distinct(anyID) == orderedSends }) {
			t.Errorf("after 30s the orderly consumer has received %d of %d ordered messages", ordered.distinct(anyID), orderedSends)
		}
		got := ordered.snapshot()
		checkGoDeliveries(t, sent, got, func(m *goSent) bool { return m.mode == "ordered" })
		checkGoOrder(t, sent, got)
	})

	t.Run("restarted consumer resumes from the committed offsets", func(t *testing.T) {
		if first == nil || in.distinct(anyID) != totalSends {
			t.Skip("the first consumer did not receive everything")
		}
		var want, got map[string]int64
		committed := func() bool {
			want, got = map[string]int64{}, map[string]int64{}
			for _, name := range []string{"broker-a", "broker-b"} {
				for q := range 4 {
					mq := fmt.Sprintf("%s/%d", name, q)
					want[mq] = maxOffset(t, c.master(t, name), goTopic, q)
					got[mq] = committedOffset(t, c.master(t, name), group, goTopic, q)
				}
			}
			return maps.Equal(want, got)
		}
		// The client commits offsets with its pulls and every 5 s (UPDATE_CONSUMER_OFFSET 15, one-way), and on
		// Shutdown. A callback that returned just before Shutdown may not have updated the client's own offset yet
		// (at-least-once), so the test waits for the commits while the consumer runs, then stops it. A commit of
		// the 5 s timer that ran just before the last callbacks leaves the next one 5 s later: the wait allows
		// three periods and their lateness under load (10 s, two periods, failed once in a loaded make test).
		if !waitFor(20*time.Second, committed) {
			t.Fatalf("while running, the brokers' committed offsets of %s are %v, the queues end at %v", group, got, want)
		}
		first.stop()
		if !waitFor(5*time.Second, committed) {
			t.Fatalf("the brokers' committed offsets of %s are %v after Shutdown, the queues end at %v", group, got, want)
		}

		// New messages after the restart point, then a new consumer (a new client instance) of the same group.
		const after = 80
		p := startGoProducer(t, nameServer)
		ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
		defer cancel()
		for i := range after {
			id := fmt.Sprintf("after-%03d", i)
			res, err := p.SendSync(ctx, goMessage(id, "after"))
			if err != nil || res.Status != primitive.SendOK {
				t.Fatalf("SendSync %s: %v %v", id, res, err)
			}
			sent.add(id, &goSent{mode: "after", queue: goQueueName(res.MessageQueue), offset: res.QueueOffset})
		}
		again := &goInbox{}
		startPushConsumer(t, nameServer, group, goTopic, consumer.MessageSelector{Type: consumer.TAG, Expression: "*"}, again.consume)
		isAfter := func(id string) bool { return strings.HasPrefix(id, "after-") }
		if !waitFor(15*time.Second, func() bool { return again.distinct(isAfter) == after }) {
			t.Fatalf("the restarted consumer received %d of the %d messages sent after the restart", again.distinct(isAfter), after)
		}
		time.Sleep(300 * time.Millisecond) // room for old messages to show up, were the offsets lost
		old := again.distinct(func(id string) bool { return !isAfter(id) })
		if old != 0 {
			t.Errorf("the restarted consumer received %d of the %d messages its group had consumed and committed", old, totalSends)
		}
		checkGoDeliveries(t, sent, again.snapshot(), func(m *goSent) bool { return m.mode == "after" })
	})
	t.Logf("whole test: %v", time.Since(start).Round(time.Millisecond))
}

// checkGoDeliveries checks the deliveries of the messages in sent that keep selects (all when nil): every one was
// received, intact, from the queue and offset its send result named; none was received that was not sent.
// Duplicates are allowed (at-least-once) but counted and explained.
func checkGoDeliveries(t *testing.T, sent *goLedger, got []goDelivery, keep func(*goSent) bool) {
	t.Helper()
	want := map[string]*goSent{}
	sent.mu.Lock()
	for id, m := range sent.sent {
		if keep == nil || keep(m) {
			want[id] = m
		}
	}
	sent.mu.Unlock()
	seen := map[string]int{}
	bad := 0
	for _, d := range got {
		m, ok := want[d.id]
		if !ok {
			t.Errorf("received a message with id %q (tag %q, queue %s) that was not sent to this consumer", d.id, d.tag, d.queue)
			bad++
		} else {
			seen[d.id]++
			switch {
			case string(d.body) != string(goBody(d.id)):
				t.Errorf("message %s: body of %d bytes differs from the %d sent", d.id, len(d.body), goBodySize)
				bad++
			case d.tag != m.mode:
				t.Errorf("message %s: tag %q, sent %q", d.id, d.tag, m.mode)
				bad++
			case m.queue != "" && d.queue != m.queue:
				t.Errorf("message %s: received from queue %s, the send result named %s", d.id, d.queue, m.queue)
				bad++
			case m.offset >= 0 && d.offset != m.offset:
				t.Errorf("message %s: queue offset %d, the send result named %d", d.id, d.offset, m.offset)
				bad++
			}
		}
		if bad >= 10 {
			t.Fatalf("too many bad deliveries")
		}
	}
	var lost []string
	for id := range want {
		if seen[id] == 0 {
			lost = append(lost, id)
		}
	}
	if len(lost) > 0 {
		slices.Sort(lost)
		t.Errorf("%d of %d messages were never received: %v", len(lost), len(want), lost[:min(len(lost), 20)])
	}
	dups := len(got) - len(seen)
	redelivered := 0
	for _, d := range got {
		if d.reconsume > 0 {
			redelivered++
		}
	}
	t.Logf("%d messages, %d deliveries, %d duplicates (at-least-once: a duplicate is a redelivery after a rebalance "+
		"moved a queue or a consumer restarted before its offset was committed; %d deliveries had reconsume times > 0)",
		len(want), len(got), dups, redelivered)
}

// checkGoOrder checks an orderly consumer's deliveries: each sharding key's messages arrive in the order they were
// sent (seq 0, 1, 2, …, each once), all from the one queue the hash selector chose, and each queue's messages in
// the order of their queue offsets.
func checkGoOrder(t *testing.T, sent *goLedger, got []goDelivery) {
	t.Helper()
	next := map[string]int{}       // sharding key → the seq expected next
	queueOf := map[string]string{} // sharding key → queue
	last := map[string]int64{}     // queue → last offset delivered
	for _, d := range got {
		m := sent.get(d.id)
		if m == nil || m.mode != "ordered" {
			continue // reported by checkGoDeliveries
		}
		if m.seq != next[m.key] {
			t.Fatalf("key %s: received seq %d (%s) when %d was next: order broken", m.key, m.seq, d.id, next[m.key])
		}
		next[m.key]++
		if q, ok := queueOf[m.key]; ok && q != d.queue {
			t.Errorf("key %s: messages from queues %s and %s", m.key, q, d.queue)
		}
		queueOf[m.key] = d.queue
		if o, ok := last[d.queue]; ok && d.offset <= o {
			t.Fatalf("queue %s: offset %d delivered after %d", d.queue, d.offset, o)
		}
		last[d.queue] = d.offset
	}
	if len(next) != orderedKeys {
		t.Errorf("received ordered messages of %d sharding keys, want %d", len(next), orderedKeys)
	}
	for key, n := range next {
		if n != orderedSends/orderedKeys {
			t.Errorf("key %s: %d messages in order, want %d", key, n, orderedSends/orderedKeys)
		}
	}
	queues := slices.Sorted(maps.Keys(last))
	t.Logf("orderly consumer: %d keys in order over queues %v", len(next), queues)
	if len(queues) < 2 {
		t.Errorf("the hash selector put %d sharding keys on %d queue(s); the test needs keys on several queues", orderedKeys, len(queues))
	}
}

// TestGoClientConsumersShareQueuesOnSimBrokers starts two push consumers of one group against the simulated
// brokers. The second one's heartbeat makes the brokers tell the first (NOTIFY_CONSUMER_IDS_CHANGED 40), both
// read the group from a broker (GET_CONSUMER_LIST_BY_GROUP 38) and split TopicTest's 8 queues: each consumes
// a disjoint, non-empty share, together all of them, well before the client's own 20s rebalance timer would
// have fixed an overlap; and nothing sent to the group is lost.
func TestGoClientConsumersShareQueuesOnSimBrokers(t *testing.T) {
	clientErrors(t)
	start := time.Now()
	c := startSimCluster(t)
	group := uniqueName("interop-sim-shared")
	inboxes := []*goInbox{{}, {}}
	for _, in := range inboxes {
		startPushConsumer(t, c.ns.Addr(), group, goTopic, consumer.MessageSelector{Type: consumer.TAG, Expression: "*"}, in.consume)
	}
	// Both brokers know both members (38).
	for _, name := range []string{"broker-a", "broker-b"} {
		var members int
		if !waitFor(5*time.Second, func() bool { members = len(brokerConsumerList(t, c.master(t, name), group)); return members == 2 }) {
			t.Fatalf("%s lists %d members of %s, want 2", name, members, group)
		}
	}

	// One message per queue and round, sent to that queue, until a round finds each queue served by exactly one
	// consumer, the same as in the round before, both consumers serving some. Rebalancing is over then.
	p := startGoProducer(t, c.ns.Addr(), producer.WithQueueSelector(producer.NewManualQueueSelector()))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	send := func(id string, q int) {
		t.Helper()
		broker := "broker-a"
		if q >= 4 {
			broker = "broker-b"
		}
		msg := goMessage(id, "shared")
		msg.Queue = &primitive.MessageQueue{Topic: goTopic, BrokerName: broker, QueueId: q % 4}
		res, err := p.SendSync(ctx, msg)
		if err != nil || res.Status != primitive.SendOK || goQueueName(res.MessageQueue) != goQueueName(msg.Queue) {
			t.Fatalf("SendSync %s to %s: %v %v", id, goQueueName(msg.Queue), res, err)
		}
	}
	servedBy := func(prefix string) map[string][]int { // queue → the consumers that received a message with the prefix
		out := map[string][]int{}
		for i, in := range inboxes {
			for _, d := range in.snapshot() {
				if strings.HasPrefix(d.id, prefix) && !slices.Contains(out[d.queue], i) {
					out[d.queue] = append(out[d.queue], i)
				}
			}
		}
		return out
	}
	settled := func(s map[string][]int) bool {
		var share [2]int
		for _, q := range goDemoQueues {
			if len(s[q]) != 1 {
				return false
			}
			share[s[q][0]]++
		}
		return share[0] > 0 && share[1] > 0
	}
	var prev map[string][]int
	settleStart := time.Now()
	deadline := settleStart.Add(15 * time.Second)
	round := 0
	for {
		if time.Now().After(deadline) {
			t.Fatalf("after 15s of probes the queues are still not split between the two consumers: last round %v", prev)
		}
		prefix := fmt.Sprintf("probe-%03d-", round)
		for q := range 8 {
			send(fmt.Sprintf("%s%d", prefix, q), q)
		}
		var s map[string][]int
		waitFor(2*time.Second, func() bool { s = servedBy(prefix); return len(s) == 8 })
		if settled(s) && prev != nil && maps.EqualFunc(s, prev, slices.Equal) {
			break
		}
		prev = s
		round++
	}
	t.Logf("rebalanced in %v, %d probe rounds: %v", time.Since(settleStart).Round(time.Millisecond), round+1, prev)

	// The share each consumer now has gets 100 messages per queue, all received by it alone.
	const perQueue = 100
	for i := range perQueue {
		for q := range 8 {
			send(fmt.Sprintf("m-%d-%03d", q, i), q)
		}
	}
	isMain := func(id string) bool { return strings.HasPrefix(id, "m-") }
	received := func() int { return inboxes[0].distinct(isMain) + inboxes[1].distinct(isMain) }
	if !waitFor(15*time.Second, func() bool { return received() >= 8*perQueue }) {
		t.Fatalf("the consumers received %d of %d messages", received(), 8*perQueue)
	}
	served := servedBy("m-")
	var shares [2][]string
	for _, q := range goDemoQueues {
		switch len(served[q]) {
		case 0:
			t.Errorf("queue %s: no consumer received its messages", q)
		case 1:
			shares[served[q][0]] = append(shares[served[q][0]], q)
		default:
			t.Errorf("queue %s: consumed by both consumers after the rebalance", q)
		}
	}
	for i, share := range shares {
		t.Logf("consumer %d received queues %v", i, share)
		// AllocateByAveragely: 8 queues, 2 consumers, 4 each.
		if len(share) != 4 {
			t.Errorf("consumer %d received %d queues, want 4 of 8", i, len(share))
		}
	}
	dups := 0
	for q := range 8 {
		for i := range perQueue {
			id := fmt.Sprintf("m-%d-%03d", q, i)
			n := inboxes[0].countOf(id) + inboxes[1].countOf(id)
			if n == 0 {
				t.Errorf("message %s was lost", id)
			}
			dups += max(n-1, 0)
		}
	}
	if n := c.demo.Broker("broker-a", 0).RequestCount(remoting.GetConsumerListByGroup) +
		c.demo.Broker("broker-b", 0).RequestCount(remoting.GetConsumerListByGroup); n == 0 {
		t.Errorf("no consumer asked a broker for its group's members (38)")
	}
	t.Logf("%d messages after the rebalance, %d duplicates; whole test %v", 8*perQueue, dups, time.Since(start).Round(time.Millisecond))
	if dups != 0 {
		t.Errorf("%d duplicates after the rebalance had settled: each queue has one consumer, none should be redelivered", dups)
	}
}

func (in *goInbox) countOf(id string) int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.count[id]
}

// brokerConsumerList is a group's members as a broker lists them (GET_CONSUMER_LIST_BY_GROUP 38).
func brokerConsumerList(t *testing.T, addr, group string) []string {
	t.Helper()
	resp := brokerCall(t, addr, remoting.GetConsumerListByGroup, map[string]string{"consumerGroup": group})
	if resp.Code != remoting.Success {
		return nil
	}
	var body struct {
		ConsumerIDList []string `json:"consumerIdList"`
	}
	if err := json.Unmarshal(resp.Body, &body); err != nil {
		t.Fatalf("38 body %q: %v", resp.Body, err)
	}
	return body.ConsumerIDList
}
