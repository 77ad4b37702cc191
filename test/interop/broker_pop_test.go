package interop

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/producer"

	"github.com/rocketpilot/rocketpilot/dataplane"
	"github.com/rocketpilot/rocketpilot/simbroker"
	"github.com/rocketpilot/rocketpilot/xds/sidecar"
)

// Pop mode through Go sidecars, judged by rocketmq-client-go's classic push consumer, its code unchanged: the
// control plane puts a consumer group in Pop mode (TopicRoute spec.pop) and each member's sidecar serves its
// pulls by Pop.

// popRule is a TopicRoute putting group in Pop mode on TopicTest.
func popRule(group string, invisible time.Duration) map[string]string {
	return map[string]string{"pop.yaml": fmt.Sprintf(`apiVersion: rocketpilot.io/v1alpha1
kind: TopicRoute
metadata: {name: pop}
spec:
  topics: {exact: [%s]}
  pop:
    consumerGroups: [%s]
    invisibleTime: %s
`, goTopic, group, invisible)}
}

// startPopSidecars starts n sidecars following the control plane at xdsAddr and waits until each holds group's
// Pop rule on TopicTest.
func startPopSidecars(t *testing.T, xdsAddr, group string, n int) []*dataplane.Proxy {
	t.Helper()
	out := make([]*dataplane.Proxy, n)
	for i := range out {
		var xc *sidecar.Client
		out[i], xc = startSidecarOf(t, xdsAddr)
		if !waitFor(10*time.Second, func() bool {
			r, err := xc.Route(t.Context(), goTopic)
			return err == nil && r.Pop[group].InvisibleTime > 0
		}) {
			t.Fatalf("sidecar %d never held the Pop rule of %s", i, group)
		}
	}
	return out
}

// startMembers starts a member of group on TopicTest through each sidecar, each a consumer process of its own
// (orderly or not, taking delay per message), and gives them time to start pulling.
func startMembers(t *testing.T, sidecars []*dataplane.Proxy, group string, orderly bool, delay time.Duration) ([]*consumerProcess, []*goInbox) {
	t.Helper()
	procs := make([]*consumerProcess, len(sidecars))
	inboxes := make([]*goInbox, len(sidecars))
	for i, s := range sidecars {
		procs[i] = startConsumerProcess(t, s.Addr(), group, goTopic, "*", group+"-"+strconv.Itoa(i), orderly, delay)
		inboxes[i] = procs[i].in
	}
	time.Sleep(2 * time.Second)
	return procs, inboxes
}

// sendKeyed sends n messages of 1 KiB to TopicTest through nameServer, in batches, each with its id as its key.
func sendKeyed(t *testing.T, nameServer, prefix string, n int) {
	t.Helper()
	p := startGoProducer(t, nameServer)
	ctx := context.Background()
	for sent := 0; sent < n; {
		batch := make([]*primitive.Message, 0, 32)
		for ; len(batch) < 32 && sent < n; sent++ {
			id := prefix + strconv.Itoa(sent)
			batch = append(batch, primitive.NewMessage(goTopic, goBody(id)).WithKeys([]string{id}))
		}
		if res, err := p.SendSync(ctx, batch...); err != nil || res.Status != primitive.SendOK {
			t.Fatalf("send: %v %v", res, err)
		}
	}
}

// popTotals sums the sidecars' Pop counts of group.
func popTotals(proxies []*dataplane.Proxy, group string) dataplane.PopStats {
	var sum dataplane.PopStats
	for _, p := range proxies {
		for _, s := range p.PopStats() {
			if s.Group != group {
				continue
			}
			sum.Popped += s.Popped
			sum.Redelivered += s.Redelivered
			sum.Acked += s.Acked
			sum.AckFailed += s.AckFailed
			sum.SentBack += s.SentBack
			sum.Released += s.Released
			sum.InFlight += s.InFlight
		}
	}
	return sum
}

// union merges inboxes: distinct ids and deliveries in all.
func union(inboxes []*goInbox) (distinct map[string]bool, deliveries int) {
	distinct = map[string]bool{}
	for _, in := range inboxes {
		for _, d := range in.snapshot() {
			distinct[d.id] = true
			deliveries++
		}
	}
	return distinct, deliveries
}

// Three members of a group on a topic of two queues, each through its own sidecar: in classic mode one member
// holds no queue and receives nothing; in Pop mode every member receives messages. 10,000 messages each way, none
// lost; the Pop group's duplicates are no more than the messages the sidecars saw come back after an expiry; every
// message handed out is acked once the members committed past it.
func TestGoClientPopModeSharesQueuesAmongMoreMembers(t *testing.T) {
	const n, members = 10000, 3
	c := startSimClusterWith(t, simbroker.DemoOptions{Queues: 1}) // TopicTest: one queue on each of 2 groups
	popGroup, classicGroup := uniqueName("interop-pop"), uniqueName("interop-classic")
	sidecars := startPopSidecars(t, startControlPlaneFor(t, c, popRule(popGroup, 20*time.Second)), popGroup, members)

	selector := consumer.MessageSelector{Type: consumer.TAG, Expression: "*"}
	popIn, classicIn := make([]*goInbox, members), make([]*goInbox, members)
	for i := range members {
		popIn[i], classicIn[i] = &goInbox{}, &goInbox{}
		startPushConsumer(t, sidecars[i].Addr(), popGroup, goTopic, selector, popIn[i].consume)
		startPushConsumer(t, sidecars[i].Addr(), classicGroup, goTopic, selector, classicIn[i].consume)
	}
	time.Sleep(3 * time.Second) // the classic group's rebalance settles on its three members
	sendKeyed(t, sidecars[0].Addr(), "pop-mode-", n)

	complete := func(inboxes []*goInbox) func() bool {
		return func() bool { d, _ := union(inboxes); return len(d) == n }
	}
	if !waitFor(90*time.Second, complete(popIn)) || !waitFor(30*time.Second, complete(classicIn)) {
		p, _ := union(popIn)
		cl, _ := union(classicIn)
		t.Fatalf("received %d (Pop mode) and %d (classic) of %d messages", len(p), len(cl), n)
	}
	popDistinct, popDeliveries := union(popIn)
	_, classicDeliveries := union(classicIn)
	for id := range popDistinct {
		if !strings.HasPrefix(id, "pop-mode-") {
			t.Errorf("unexpected message %q", id)
		}
	}
	idle := 0
	var popCounts, classicCounts []int
	for i := range members {
		p, cl := len(popIn[i].snapshot()), len(classicIn[i].snapshot())
		popCounts, classicCounts = append(popCounts, p), append(classicCounts, cl)
		if p == 0 {
			t.Errorf("Pop mode: member %d received nothing", i)
		}
		if cl == 0 {
			idle++
		}
	}
	t.Logf("deliveries per member: Pop mode %v (%d in all), classic %v (%d in all)", popCounts, popDeliveries, classicCounts, classicDeliveries)
	if idle != 1 {
		t.Errorf("classic mode: %d idle members of %d on 2 queues, want 1 (deliveries %v)", idle, members, classicCounts)
	}
	// Acks follow the members' commits (every 5 s in this client).
	var stats dataplane.PopStats
	if !waitFor(20*time.Second, func() bool {
		stats = popTotals(sidecars, popGroup)
		return stats.InFlight == 0 && stats.Acked == stats.Popped
	}) {
		t.Errorf("Pop counts never settled: %+v", stats)
	}
	t.Logf("Pop counts over the sidecars: %+v", stats)
	if dup := popDeliveries - n; int64(dup) > stats.Redelivered {
		t.Errorf("Pop mode: %d duplicate deliveries, but only %d messages came back after an expiry", dup, stats.Redelivered)
	}
	if stats.Popped < n || stats.AckFailed != 0 {
		t.Errorf("Pop counts %+v: want at least %d popped and no failed ack", stats, n)
	}
}

// A member killed mid-stream (SIGKILL: no shutdown, nothing committed) leaves its un-acked messages, consumed or
// not, to the broker, which hands them to the other members after the invisible time: none is lost.
func TestGoClientPopModeMemberKilled(t *testing.T) {
	const n, members = 3000, 3
	const invisible = 3 * time.Second
	c := startSimClusterWith(t, simbroker.DemoOptions{Queues: 1})
	group := uniqueName("interop-pop-kill")
	sidecars := startPopSidecars(t, startControlPlaneFor(t, c, popRule(group, invisible)), group, members)
	// Slow consumers: the killed one has messages popped for it that it never consumed.
	procs, inboxes := startMembers(t, sidecars, group, false, 20*time.Millisecond)
	sendKeyed(t, sidecars[0].Addr(), "kill-", n)
	if !waitFor(30*time.Second, func() bool { return inboxes[0].distinct(anyID) >= 50 }) {
		t.Fatalf("member 0 received %d messages before the kill", inboxes[0].distinct(anyID))
	}
	procs[0].kill()
	before := inboxes[0].distinct(anyID)
	if !waitFor(60*time.Second, func() bool { d, _ := union(inboxes); return len(d) == n }) {
		d, _ := union(inboxes)
		t.Fatalf("after the kill the group received %d of %d messages (stats %+v)", len(d), n, popTotals(sidecars, group))
	}
	_, deliveries := union(inboxes)
	stats := cameBack(t, sidecars, group, invisible)
	t.Logf("member 0 received %d before it was killed; %d deliveries of %d messages; Pop counts %+v", before, deliveries, n, stats)
}

// cameBack waits, for at most the invisible time and a margin, until the messages the killed member's sidecar
// released have been handed out again, and fails unless it released some. Those it had consumed before it died
// come back only after the invisible time, as duplicates, once the group has everything.
func cameBack(t *testing.T, sidecars []*dataplane.Proxy, group string, invisible time.Duration) dataplane.PopStats {
	t.Helper()
	var stats dataplane.PopStats
	waitFor(invisible+10*time.Second, func() bool {
		stats = popTotals(sidecars, group)
		return stats.Released > 0 && stats.Redelivered >= stats.Released
	})
	if stats.Released == 0 || stats.Redelivered < stats.Released {
		t.Errorf("the killed member's sidecar released %d messages, %d came back: want some, and all of them back", stats.Released, stats.Redelivered)
	}
	return stats
}

// ali-ons' push consumers, code unchanged, in Pop mode through their sidecars: each of three members of a group
// holds every one of TopicTest's 8 queues (classic mode would give each two or three) and receives messages; none
// is lost; a member killed mid-stream leaves what it had not acked to the others.
func TestAliOnsPopMode(t *testing.T) {
	node := requireAliOns(t)
	const n, members = 1000, 3
	ns, demo := startDemoForAliOns(t)
	cluster := &simCluster{ns: ns, demo: demo}
	group := uniqueName("interop-alions-pop")
	sidecars := startPopSidecars(t, startControlPlaneFor(t, cluster, popRule(group, 3*time.Second)), group, members)
	consumers := make([]*aliOnsConsumer, members)
	want := map[*aliOnsConsumer][]aliOnsMQ{}
	for i := range consumers {
		// 5 ms per message, and 50 for the one killed: while it consumes, it holds messages it has not consumed.
		delay := "5"
		if i == members-1 {
			delay = "50"
		}
		consumers[i] = startAliOnsConsumer(t, node, sidecars[i].Addr(), group, "Pop-mode consumer "+strconv.Itoa(i), delay)
		want[consumers[i]] = demoTopicQueues()
	}
	awaitQueues(t, 30*time.Second, want) // every member holds every queue

	sent := produceAliOns(t, node, sidecars[0].Addr(), "alions-pop-", n)
	awaitAll(t, 60*time.Second, sent, consumers...)
	for _, c := range consumers {
		if c.total == 0 {
			t.Errorf("%s received nothing", c.name)
		}
		checkPopDeliveries(t, sent, c)
	}

	// One member dies while it consumes the next batch: what it did not consume reaches the others, after the
	// invisible time.
	more := produceAliOns(t, node, sidecars[0].Addr(), "alions-pop-more-", n/2)
	dead := consumers[2]
	_ = dead.cmd.Process.Kill()
	for dead.take(t, time.After(10*time.Second), "the killed consumer's output to end") {
	}
	rest := map[string]aliOnsMsg{}
	for k, m := range more {
		if len(dead.received[k]) == 0 {
			rest[k] = m
		}
	}
	awaitAll(t, 60*time.Second, rest, consumers[0], consumers[1])
	stats := cameBack(t, sidecars, group, 3*time.Second)
	var totals []int
	for _, c := range consumers {
		totals = append(totals, c.total)
		checkPopDeliveries(t, more, c)
	}
	t.Logf("deliveries per member %v for %d messages; %d of the last %d left to the survivors; Pop counts %+v",
		totals, n+n/2, len(rest), len(more), stats)
	for _, c := range consumers[:2] {
		c.close(t)
	}
}

// checkPopDeliveries checks that every first delivery of a sent key is the message sent, from the queue it was
// sent to; its queue offset is the sidecar's, not the broker's (see dataplane's Pop mode). A message delivered
// again after its invisible time ran out (reconsume times above 0) is the broker's copy in the Pop retry topic, as
// in Java: another message id and queue, the same key.
func checkPopDeliveries(t *testing.T, sent map[string]aliOnsMsg, c *aliOnsConsumer) {
	t.Helper()
	for k, ds := range c.received {
		s, ok := sent[k]
		if !ok {
			continue // of another batch
		}
		for _, d := range ds {
			if d.Reconsume == 0 && (d.MsgID != s.MsgID || d.queue() != s.queue()) {
				t.Errorf("%s received %s as %+v, sent as %+v", c.name, k, d, s)
			}
		}
	}
}

// An ordered topic in Pop mode: three orderly members (rocketmq-client-go's orderly push consumer, each through
// its own sidecar) share both queues, the brokers' orderly Pop handing a queue's next messages out only once the
// last ones are acked. One member is killed mid-stream: the messages it held come back, after the invisible time,
// before any later one of their queue. Merged by the time they were handed over, the group's deliveries of each
// queue are the queue's messages in order, a message delivered again only right after its first delivery's
// successors were cut short by the kill: the first deliveries are in offset order, with no gap.
func TestGoClientPopModeOrderedAcrossAKill(t *testing.T) {
	const n, members = 600, 3
	c := startSimClusterWith(t, simbroker.DemoOptions{Queues: 1})
	group := uniqueName("interop-pop-ordered")
	rule := popRule(group, 3*time.Second)
	rule["pop.yaml"] = strings.Replace(rule["pop.yaml"], "spec:\n", "spec:\n  ordered: true\n", 1)
	sidecars := startPopSidecars(t, startControlPlaneFor(t, c, rule), group, members)
	procs, inboxes := startMembers(t, sidecars, group, true, 3*time.Millisecond)

	// Sent one at a time, to the queues in turn: each queue's messages in the order of their ids.
	p := startGoProducer(t, c.ns.Addr(), producer.WithQueueSelector(producer.NewManualQueueSelector()))
	order := map[string][]string{} // queue → ids in offset order
	for i := range n {
		id := "ordered-" + strconv.Itoa(i)
		mq := &primitive.MessageQueue{Topic: goTopic, BrokerName: []string{"broker-a", "broker-b"}[i%2], QueueId: 0}
		msg := primitive.NewMessage(goTopic, goBody(id)).WithKeys([]string{id})
		msg.Queue = mq
		res, err := p.SendSync(context.Background(), msg)
		if err != nil || res.Status != primitive.SendOK {
			t.Fatalf("send %s: %v %v", id, res, err)
		}
		q := goQueueName(res.MessageQueue)
		order[q] = append(order[q], id)
	}
	// Killed while its sidecar holds messages it has handed out and not seen committed: those are what must come
	// back. (Under load the producer may fall behind the member, which then holds nothing for a moment.)
	if !waitFor(30*time.Second, func() bool {
		return inboxes[0].distinct(anyID) >= 40 && popTotals(sidecars[:1], group).InFlight > 0
	}) {
		t.Fatalf("member 0 received %d messages and held %d before the kill", inboxes[0].distinct(anyID), popTotals(sidecars[:1], group).InFlight)
	}
	procs[0].kill()
	if !waitFor(90*time.Second, func() bool { d, _ := union(inboxes); return len(d) == n }) {
		d, _ := union(inboxes)
		t.Fatalf("the group received %d of %d ordered messages (stats %+v)", len(d), n, popTotals(sidecars, group))
	}

	var all []goDelivery
	for _, in := range inboxes {
		all = append(all, in.snapshot()...)
	}
	slices.SortStableFunc(all, func(a, b goDelivery) int { return cmp.Compare(a.at, b.at) })
	next := map[string]int{}  // queue → index of the next first delivery in order[queue]
	seen := map[string]bool{} // ids delivered
	again := map[string]int{} // queue → deliveries again
	for _, d := range all {
		if seen[d.id] {
			again[d.queue]++
			continue
		}
		seen[d.id] = true
		want := order[d.queue]
		if next[d.queue] >= len(want) || want[next[d.queue]] != d.id {
			t.Fatalf("queue %s: %s delivered first when %s was next: order broken", d.queue, d.id, want[min(next[d.queue], len(want)-1)])
		}
		next[d.queue]++
	}
	stats := popTotals(sidecars, group)
	t.Logf("%d deliveries of %d ordered messages over queues %v; delivered again %v; member 0 had %d when killed; Pop counts %+v",
		len(all), n, slices.Sorted(maps.Keys(order)), again, inboxes[0].distinct(anyID), stats)
	if stats.Released == 0 {
		t.Errorf("the killed member's sidecar released nothing: %+v", stats)
	}
}

// The Go client's retry in Pop mode: a message its listener answers RECONSUME_LATER (delay level 1) is sent back
// (CONSUMER_SEND_MSG_BACK), which the sidecar turns into a change of invisible time: the message comes back after
// a second, with its reconsume times counted, and is acked once consumed. None is lost, none is acked before.
func TestGoClientPopModeRetryLater(t *testing.T) {
	const n = 20
	c := startSimClusterWith(t, simbroker.DemoOptions{Queues: 1})
	group := uniqueName("interop-pop-retry")
	sidecars := startPopSidecars(t, startControlPlaneFor(t, c, popRule(group, 20*time.Second)), group, 1)
	var mu sync.Mutex
	seen := map[string][]int32{} // id → the reconsume times of each delivery
	startPushConsumer(t, sidecars[0].Addr(), group, goTopic, consumer.MessageSelector{Type: consumer.TAG, Expression: "*"},
		func(ctx context.Context, msgs ...*primitive.MessageExt) (consumer.ConsumeResult, error) {
			mu.Lock()
			defer mu.Unlock()
			m := msgs[0]
			first := len(seen[m.GetKeys()]) == 0
			seen[m.GetKeys()] = append(seen[m.GetKeys()], m.ReconsumeTimes)
			if first {
				if cc, ok := primitive.GetConcurrentlyCtx(ctx); ok {
					cc.DelayLevelWhenNextConsume = 1 // one second
				}
				return consumer.ConsumeRetryLater, nil
			}
			return consumer.ConsumeSuccess, nil
		}, consumer.WithConsumeMessageBatchMaxSize(1))
	time.Sleep(2 * time.Second)
	sendKeyed(t, sidecars[0].Addr(), "retry-", n)
	if !waitFor(30*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		done := 0
		for _, r := range seen {
			if len(r) >= 2 {
				done++
			}
		}
		return done == n
	}) {
		mu.Lock()
		t.Fatalf("messages delivered twice: %d of %d (%v)", len(seen), n, seen)
	}
	mu.Lock()
	for id, r := range seen {
		if r[0] != 0 || r[len(r)-1] < 1 {
			t.Errorf("%s: reconsume times %v, want 0 then at least 1", id, r)
		}
	}
	mu.Unlock()
	var stats dataplane.PopStats
	if !waitFor(15*time.Second, func() bool { stats = popTotals(sidecars, group); return stats.Acked >= n && stats.InFlight == 0 }) {
		t.Errorf("Pop counts never settled: %+v", stats)
	}
	if stats.SentBack < n {
		t.Errorf("Pop counts %+v: want %d sent back", stats, n)
	}
	t.Logf("Pop counts %+v", stats)
}
