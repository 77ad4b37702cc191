package watcher

import (
	"fmt"
	"log/slog"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/rocketpilot/rocketpilot/internal/embeddedtest"
	"github.com/rocketpilot/rocketpilot/internal/testutil"
	"github.com/rocketpilot/rocketpilot/nameserver/client"
	"github.com/rocketpilot/rocketpilot/nameserver/embedded"
	"github.com/rocketpilot/rocketpilot/remoting"
	"github.com/rocketpilot/rocketpilot/routing"
)

func startNameServer(t *testing.T) *embedded.NameServer {
	t.Helper()
	return embeddedtest.Start(t, nil)
}

func brokerGroup(cluster, name string, base int) embedded.Broker {
	return embedded.Broker{Cluster: cluster, Name: name, Addrs: map[int64]string{
		0: fmt.Sprintf("127.0.1.%d:10911", base), 1: fmt.Sprintf("127.0.1.%d:10911", base+1)}}
}

func queues(broker string, perm int32, n int32) remoting.QueueData {
	return remoting.QueueData{BrokerName: broker, ReadQueueNums: n, WriteQueueNums: n, Perm: perm}
}

func testOptions(interval time.Duration, addrs ...string) Options {
	o := Options{
		Source:   "test",
		Addrs:    addrs,
		Interval: interval,
		// Withdraw a topic at the second 17 in a row: the tests delete topics on purpose.
		RemoveAfter: time.Nanosecond,
		Client:      client.Options{RequestTimeout: 500 * time.Millisecond, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond},
	}
	if testing.Verbose() {
		o.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return o
}

// runWatcher is startWatcher, then the first sync.
func runWatcher(t *testing.T, table *routing.Table, opts Options) *Watcher {
	t.Helper()
	w := startWatcher(t, table, opts)
	select {
	case <-w.Synced():
	case <-time.After(10 * time.Second):
		t.Fatal("watcher never synced")
	}
	return w
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	testutil.EventuallyTrue(t, within, what, cond)
}

func memberNames(t *routing.Topic) []string {
	if t == nil {
		return nil
	}
	var out []string
	for _, m := range t.BrokerSet.Members {
		out = append(out, m.BrokerName)
	}
	return out
}

// demoLike loads two clusters, TopicTest on two groups and n more topics over a few shapes.
func demoLike(ns *embedded.NameServer, n int) {
	ns.RegisterBroker(brokerGroup("c1", "broker-a", 10))
	ns.RegisterBroker(brokerGroup("c1", "broker-b", 20))
	ns.RegisterBroker(brokerGroup("c2", "broker-c", 30))
	ns.SetTopic("TopicTest", queues("broker-a", 6, 4), queues("broker-b", 6, 4))
	for i := range n {
		switch i % 3 {
		case 0:
			ns.SetTopic(fmt.Sprintf("t-%03d", i), queues("broker-a", 6, 8))
		case 1:
			ns.SetTopic(fmt.Sprintf("t-%03d", i), queues("broker-b", 4, 8), queues("broker-c", 6, 8))
		case 2:
			ns.SetTopic(fmt.Sprintf("t-%03d", i), queues("broker-c", 6, 8))
		}
	}
}

func TestInitialSync(t *testing.T) {
	ns := startNameServer(t)
	demoLike(ns, 99)
	table := routing.NewTable()
	runWatcher(t, table, testOptions(time.Second, ns.Addr()))
	topics, sets := table.Stats()
	if topics != 100 || sets != 4 {
		t.Fatalf("model has %d topics over %d broker sets, want 100 over 4", topics, sets)
	}
	tt := table.Topic("TopicTest")
	if got := memberNames(tt); !slices.Equal(got, []string{"broker-a", "broker-b"}) {
		t.Fatalf("TopicTest members = %v", got)
	}
	a := tt.BrokerSet.Member("broker-a")
	if a.Cluster != "c1" || a.Master() != "127.0.1.10:10911" || len(a.Addrs) != 2 || a.Perm != 6 || a.WriteQueueNums != 4 {
		t.Fatalf("broker-a member = %+v", a)
	}
	if got := table.Topic("t-001").BrokerSet.Member("broker-b"); got.Perm != routing.PermRead || got.Writable() {
		t.Fatalf("read-only member = %+v", got)
	}
	if len(table.Brokers()) != 3 {
		t.Fatalf("brokers = %+v", table.Brokers())
	}
}

func TestOutageKeepsLastGoodRoutes(t *testing.T) {
	ns := startNameServer(t)
	demoLike(ns, 20)
	table := routing.NewTable()
	const interval = 150 * time.Millisecond
	w := runWatcher(t, table, testOptions(interval, ns.Addr()))
	before := table.Snapshot()

	ns.Pause()
	errorsBefore := w.Status().Errors
	time.Sleep(3*interval + interval/2) // three full poll intervals of outage
	if w.Status().Errors <= errorsBefore {
		t.Fatal("no poll failed during the outage: the test did not test anything")
	}
	after := table.Snapshot()
	if after.Version != before.Version || len(after.Topics) != len(before.Topics) {
		t.Fatalf("outage changed the model: version %d -> %d, topics %d -> %d",
			before.Version, after.Version, len(before.Topics), len(after.Topics))
	}
	if st := w.Status().NameServers[0]; st.Reachable || st.LastError == "" {
		t.Fatalf("status during outage = %+v", st)
	}

	// Recovery: a change made while the NameServer is back shows up.
	if err := ns.Resume(); err != nil {
		t.Fatal(err)
	}
	ns.SetPerm("TopicTest", "broker-b", routing.PermRead)
	eventually(t, 5*time.Second, "perm change after recovery", func() bool {
		m := table.Topic("TopicTest").BrokerSet.Member("broker-b")
		return m.Perm == routing.PermRead
	})
	eventually(t, 2*time.Second, "reachable again", func() bool { return w.Status().NameServers[0].Reachable })
}

func TestExpiredBrokerLeavesRoutesWithinOneInterval(t *testing.T) {
	ns := startNameServer(t)
	demoLike(ns, 300)
	table := routing.NewTable()
	const interval = time.Second
	w := runWatcher(t, table, testOptions(interval, ns.Addr()))
	var affected []string
	table.Range(func(tp *routing.Topic) bool {
		if tp.BrokerSet.Member("broker-b") != nil {
			affected = append(affected, tp.Name)
		}
		return true
	})
	if len(affected) < 100 {
		t.Fatalf("only %d topics use broker-b", len(affected))
	}
	ns.ExpireBroker("broker-b")
	expired := time.Now()
	eventually(t, interval+interval/2, "every route off the expired broker", func() bool {
		for _, name := range affected {
			if tp := table.Topic(name); tp != nil && tp.BrokerSet.Member("broker-b") != nil {
				return false
			}
		}
		return true
	})
	// Topics the paced cycle reached first need no re-query; the rest were brought forward by the broker change.
	t.Logf("%d routes left broker-b %v after it expired (interval %v); %d brought forward by the broker change",
		len(affected), time.Since(expired).Round(time.Millisecond), interval, w.Status().BrokerRequeues)
	if got := memberNames(table.Topic("TopicTest")); !slices.Equal(got, []string{"broker-a"}) {
		t.Fatalf("TopicTest members = %v", got)
	}
	if table.Topic("t-001").BrokerSet.Member("broker-c") == nil {
		t.Fatal("a topic lost its other broker group")
	}
}

func TestTwoNameServersMerge(t *testing.T) {
	ns1, ns2 := startNameServer(t), startNameServer(t)
	for _, ns := range []*embedded.NameServer{ns1, ns2} {
		ns.RegisterBroker(brokerGroup("c1", "broker-a", 10))
		ns.RegisterBroker(brokerGroup("c1", "broker-b", 20))
	}
	// The NameServers do not sync: each saw a different broker register the shared topic.
	ns1.SetTopic("shared", queues("broker-a", 6, 4))
	ns2.SetTopic("shared", queues("broker-b", 6, 4))
	ns1.SetTopic("only-on-1", queues("broker-a", 6, 4))
	ns2.SetTopic("only-on-2", queues("broker-b", 6, 4))
	table := routing.NewTable()
	runWatcher(t, table, testOptions(200*time.Millisecond, ns1.Addr(), ns2.Addr()))

	if got := memberNames(table.Topic("shared")); !slices.Equal(got, []string{"broker-a", "broker-b"}) {
		t.Fatalf("shared = %v, want the union", got)
	}
	if table.Topic("only-on-1") == nil || table.Topic("only-on-2") == nil {
		t.Fatal("a topic known to one NameServer only is missing")
	}
	// One NameServer dropping a topic leaves the other's view; both dropping it removes it.
	ns1.RemoveTopic("shared")
	eventually(t, 3*time.Second, "shared narrowed to ns2's view", func() bool {
		return slices.Equal(memberNames(table.Topic("shared")), []string{"broker-b"})
	})
	ns2.RemoveTopic("shared")
	eventually(t, 3*time.Second, "shared removed", func() bool { return table.Topic("shared") == nil })
	if table.Topic("only-on-1") == nil || table.Topic("only-on-2") == nil {
		t.Fatal("unrelated topics were lost")
	}
}

func TestMalformedFrameClosesOneConnectionAndRecovers(t *testing.T) {
	ns := startNameServer(t)
	demoLike(ns, 30)
	table := routing.NewTable()
	w := runWatcher(t, table, testOptions(200*time.Millisecond, ns.Addr()))
	before := table.Snapshot()
	ns.CorruptResponses(5)
	eventually(t, 5*time.Second, "the corrupt frames were read", func() bool { return w.Status().Errors >= 1 })
	if got := table.Snapshot(); got.Version != before.Version {
		t.Fatalf("garbage changed the model: version %d -> %d", before.Version, got.Version)
	}
	ns.SetTopic("new-after-garbage", queues("broker-a", 6, 2))
	eventually(t, 5*time.Second, "a topic added after the garbage", func() bool { return table.Topic("new-after-garbage") != nil })
	if dials := w.ns[0].client.Dials(); dials < 2 {
		t.Fatalf("client dialled %d times; the corrupt connection should have been replaced", dials)
	}
}

func TestTopicListFallbacks(t *testing.T) {
	ns := startNameServer(t)
	demoLike(ns, 10)
	ns.SetAllTopicListEnabled(false)
	table := routing.NewTable()
	runWatcher(t, table, testOptions(200*time.Millisecond, ns.Addr()))
	if topics, _ := table.Stats(); topics != 11 {
		t.Fatalf("with 206 disabled, 224 per cluster found %d topics, want 11", topics)
	}
	if ns.RequestCount(remoting.GetTopicsByCluster) == 0 {
		t.Fatal("224 was never asked")
	}

	ns2 := startNameServer(t)
	demoLike(ns2, 10)
	ns2.SetAllTopicListEnabled(false)
	ns2.SetTopicListEnabled(false)
	opts := testOptions(200*time.Millisecond, ns2.Addr())
	opts.Topics = []string{"TopicTest", "t-001", "no-such-topic"}
	table2 := routing.NewTable()
	runWatcher(t, table2, opts)
	if topics, _ := table2.Stats(); topics != 2 || table2.Topic("t-001") == nil {
		t.Fatalf("with 206 and 224 disabled, the configured list gave %d topics", topics)
	}
}

func TestNewAndDeletedTopics(t *testing.T) {
	ns := startNameServer(t)
	demoLike(ns, 10)
	table := routing.NewTable()
	w := runWatcher(t, table, testOptions(200*time.Millisecond, ns.Addr()))
	ns.SetTopic("fresh", queues("broker-c", 6, 2))
	eventually(t, 3*time.Second, "new topic learned", func() bool { return table.Topic("fresh") != nil })
	ns.RemoveTopic("t-002")
	eventually(t, 3*time.Second, "deleted topic removed", func() bool { return table.Topic("t-002") == nil })
	eventually(t, 3*time.Second, "deleted topic forgotten", func() bool { return w.Status().Topics == 11 })
	if w.Status().Unchanged == 0 {
		t.Fatal("no poll was recognised as unchanged: every body was decoded again")
	}
}

func TestInUseModeLoadFollowsUse(t *testing.T) {
	ns := startNameServer(t)
	demoLike(ns, 999)
	table := routing.NewTable()
	opts := testOptions(200*time.Millisecond, ns.Addr())
	opts.Mode = ModeInUse
	runWatcher(t, table, opts)
	if topics, _ := table.Stats(); topics != 0 {
		t.Fatalf("in-use mode learned %d topics nobody asked for", topics)
	}
	release := table.Interest().Want("TopicTest", "t-005", "no-such-topic")
	eventually(t, 3*time.Second, "wanted topics resolved", func() bool {
		return table.Topic("TopicTest") != nil && table.Topic("t-005") != nil
	})
	time.Sleep(600 * time.Millisecond) // three intervals of steady polling
	if n := ns.RequestCount(remoting.GetAllTopicListFromNameServer); n != 0 {
		t.Fatalf("in-use mode asked for the whole topic list %d times", n)
	}
	// Three topics polled about every 200 ms for under a second: tens of 105s, not the 1,000 topics that exist.
	if n := ns.RequestCount(remoting.GetRouteInfoByTopic); n > 60 {
		t.Fatalf("%d route queries for 3 topics in use", n)
	}
	release()
	eventually(t, 3*time.Second, "released topics withdrawn", func() bool { return table.Topic("TopicTest") == nil })
}

func TestOptionsValidation(t *testing.T) {
	if _, err := New(routing.NewTable(), Options{}); err == nil {
		t.Fatal("no address accepted")
	}
	if _, err := New(routing.NewTable(), Options{Addrs: []string{"a:1"}, Mode: "some"}); err == nil {
		t.Fatal("unknown mode accepted")
	}
}

// TestBrokerChangeBringsTopicsForward: with topics polled every 20 s and the broker table every 100 ms, routes
// leave an expired broker long before the paced cycle would reach them.
func TestBrokerChangeBringsTopicsForward(t *testing.T) {
	ns := startNameServer(t)
	demoLike(ns, 300)
	table := routing.NewTable()
	opts := testOptions(20*time.Second, ns.Addr())
	opts.BrokerInterval = 100 * time.Millisecond
	w := runWatcher(t, table, opts)
	polledBefore := ns.RequestCount(remoting.GetRouteInfoByTopic)
	ns.ExpireBroker("broker-b")
	eventually(t, 5*time.Second, "every route off the expired broker", func() bool {
		n := 0
		table.Range(func(tp *routing.Topic) bool {
			if tp.BrokerSet.Member("broker-b") != nil {
				n++
			}
			return true
		})
		return n == 0
	})
	// broker-b served TopicTest and a third of the others, 101 topics, all asked again at once, while the paced
	// cycle (300 topics over 20 s) could have reached only a handful of them.
	if got := w.Status().BrokerRequeues; got < 95 {
		t.Fatalf("%d topics brought forward by the broker change", got)
	}
	if asked := ns.RequestCount(remoting.GetRouteInfoByTopic) - polledBefore; asked > 400 {
		t.Fatalf("%d route queries after the change; only the affected topics should have been asked", asked)
	}
	if n := ns.RequestCount(remoting.GetAllTopicListFromNameServer); n > 2 {
		t.Fatalf("topic list polled %d times in a 20 s interval", n)
	}
}

// TestRestartedNameServerKeepsRoutes: a NameServer keeps routes in memory only; after a restart it has no brokers
// and answers 17 for every topic until brokers register again. That must not empty the model.
func TestRestartedNameServerKeepsRoutes(t *testing.T) {
	ns := startNameServer(t)
	demoLike(ns, 30)
	table := routing.NewTable()
	const interval = 150 * time.Millisecond
	w := runWatcher(t, table, testOptions(interval, ns.Addr()))
	before := table.Snapshot()
	for _, b := range []string{"broker-a", "broker-b", "broker-c"} {
		ns.ExpireBroker(b) // every group gone: the state of a freshly restarted NameServer
	}
	if ns.TopicCount() != 0 {
		t.Fatalf("the restarted NameServer still has %d topics", ns.TopicCount())
	}
	ns.DropConnections()
	queries := w.Status().Queries
	time.Sleep(4 * interval)
	if w.Status().Queries <= queries {
		t.Fatal("no topic was polled while the NameServer was empty: the test tested nothing")
	}
	if after := table.Snapshot(); len(after.Topics) != len(before.Topics) {
		t.Fatalf("a restarted NameServer emptied the model: %d topics -> %d", len(before.Topics), len(after.Topics))
	}
	// Brokers re-register with their topics: routes follow again.
	demoLike(ns, 30)
	ns.SetPerm("TopicTest", "broker-a", routing.PermRead)
	eventually(t, 5*time.Second, "a change after the brokers came back", func() bool {
		return table.Topic("TopicTest").BrokerSet.Member("broker-a").Perm == routing.PermRead
	})
}

// TestFailedPollKeepsThatNameServersView: when one NameServer says 17 and the other fails to answer, the failing
// one's last good route stands.
func TestFailedPollKeepsThatNameServersView(t *testing.T) {
	ns1, ns2 := startNameServer(t), startNameServer(t)
	for _, ns := range []*embedded.NameServer{ns1, ns2} {
		ns.RegisterBroker(brokerGroup("c1", "broker-a", 10))
	}
	ns2.SetTopic("only-on-2", queues("broker-a", 6, 4))
	ns1.SetTopic("both", queues("broker-a", 6, 4))
	ns2.SetTopic("both", queues("broker-a", 6, 4))
	table := routing.NewTable()
	const interval = 150 * time.Millisecond
	w := runWatcher(t, table, testOptions(interval, ns1.Addr(), ns2.Addr()))
	if table.Topic("only-on-2") == nil {
		t.Fatal("topic of ns2 not learned")
	}
	ns2.Pause()
	queries := w.Status().Queries
	time.Sleep(4 * interval)
	if w.Status().Queries <= queries || w.Status().Errors == 0 {
		t.Fatal("nothing was polled during the outage: the test tested nothing")
	}
	if table.Topic("only-on-2") == nil {
		t.Fatal("ns1's 17 removed a topic only the unreachable ns2 knows")
	}
}

// TestMalformedFrameClosesOnlyThatConnection: with two NameServers, garbage from one leaves the other's connection
// alone.
func TestMalformedFrameClosesOnlyThatConnection(t *testing.T) {
	ns1, ns2 := startNameServer(t), startNameServer(t)
	demoLike(ns1, 10)
	demoLike(ns2, 10)
	table := routing.NewTable()
	w := runWatcher(t, table, testOptions(150*time.Millisecond, ns1.Addr(), ns2.Addr()))
	ns1.CorruptResponses(3)
	eventually(t, 5*time.Second, "ns1's connection replaced", func() bool { return w.ns[0].client.Dials() >= 2 })
	ns1.SetTopic("after-garbage", queues("broker-a", 6, 2))
	eventually(t, 5*time.Second, "a topic added after the garbage", func() bool { return table.Topic("after-garbage") != nil })
	if d := w.ns[1].client.Dials(); d != 1 {
		t.Fatalf("ns2's connection was redialled %d times", d)
	}
}

// TestConcurrencyAndRateLimits: route queries never exceed the concurrency bound, and a rate limit stretches a
// cold sync accordingly (a lower bound on time, which a slow machine cannot break).
func TestConcurrencyAndRateLimits(t *testing.T) {
	ns := startNameServer(t)
	demoLike(ns, 59) // 60 topics
	ns.SetLatency(20 * time.Millisecond)
	table := routing.NewTable()
	opts := testOptions(time.Hour, ns.Addr())
	opts.Concurrency = 3
	opts.RateLimit = 100 // per second; the burst is the concurrency
	start := time.Now()
	runWatcher(t, table, opts)
	took := time.Since(start)
	if got := ns.MaxInFlight(); got > 3+1 { // the broker-table poll may overlap one route query
		t.Fatalf("%d requests in flight at once with concurrency 3", got)
	}
	if ns.MaxInFlight() < 2 {
		t.Fatalf("queries were never concurrent (max in flight %d): the test tested nothing", ns.MaxInFlight())
	}
	// 60 topics at 100/s with a burst of 3 cannot take less than (60-3)/100 s.
	if took < 570*time.Millisecond {
		t.Fatalf("cold sync of 60 topics at 100/s took %v", took)
	}
	if topics, _ := table.Stats(); topics != 60 {
		t.Fatalf("synced %d topics", topics)
	}
}

// TestRouteQueriesArePaced: after the first sync, each topic is asked once per interval, spread evenly, not in a
// burst (an upper bound on a count, which a slow machine can only lower).
func TestRouteQueriesArePaced(t *testing.T) {
	ns := startNameServer(t)
	demoLike(ns, 99) // 100 topics
	table := routing.NewTable()
	opts := testOptions(2*time.Second, ns.Addr())
	opts.RateLimit = 1e6
	runWatcher(t, table, opts)
	before := ns.RequestCount(remoting.GetRouteInfoByTopic)
	time.Sleep(400 * time.Millisecond)
	asked := ns.RequestCount(remoting.GetRouteInfoByTopic) - before
	// Paced over 2 s, 100 topics make about 20 queries in 400 ms; a burst would make 100.
	if asked > 45 {
		t.Fatalf("%d route queries in the first 400 ms of a 2 s cycle of 100 topics", asked)
	}
	if asked == 0 {
		t.Fatal("no route query in 400 ms: the cycle did not start")
	}
}
