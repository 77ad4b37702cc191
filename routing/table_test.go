package routing

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"
)

func member(cluster, name string, perm, queues int32, addrs ...string) Member {
	m := Member{Cluster: cluster, BrokerName: name, Perm: perm, ReadQueueNums: queues, WriteQueueNums: queues}
	for i, a := range addrs {
		m.Addrs = append(m.Addrs, BrokerAddr{ID: int64(i), Addr: a})
	}
	return m
}

func route(members ...Member) *Route { return &Route{Members: members} }

func nextNow(t *testing.T, s *Subscription) ChangeSet {
	t.Helper()
	cs, ok, err := s.TryNext()
	if err != nil || !ok {
		t.Fatalf("no pending change set (ok=%v err=%v)", ok, err)
	}
	return cs
}

func keys(m map[string]struct{}) []string { return slices.Sorted(maps.Keys(m)) }

func TestTopicsOfOneShapeShareABrokerSet(t *testing.T) {
	tab := NewTable()
	a := member("c1", "broker-a", 6, 8, "10.0.0.1:10911", "10.0.0.2:10911")
	b := member("c1", "broker-b", 6, 8, "10.0.1.1:10911")
	tab.Apply("ns", Update{"t1", route(a, b)}, Update{"t2", route(b, a)}, Update{"t3", route(a)})
	t1, t2, t3 := tab.Topic("t1"), tab.Topic("t2"), tab.Topic("t3")
	if t1.BrokerSet != t2.BrokerSet {
		t.Fatal("same shape in a different order gave two broker sets")
	}
	if t1.BrokerSet == t3.BrokerSet {
		t.Fatal("different shapes share a broker set")
	}
	if topics, sets := tab.Stats(); topics != 3 || sets != 2 {
		t.Fatalf("stats = %d topics, %d sets", topics, sets)
	}
	if len(t1.BrokerSet.Hash) != 16 || t1.BrokerSet.Member("broker-b").Master() != "10.0.1.1:10911" {
		t.Fatalf("broker set = %+v", t1.BrokerSet)
	}
	// The hash is a function of content only: a fresh table computes the same one.
	other := NewTable()
	other.Apply("x", Update{"z", route(b, a)})
	if other.Topic("z").BrokerSet.Hash != t1.BrokerSet.Hash {
		t.Fatal("hash is not stable across tables")
	}
}

func TestChangeSetsNameWhatChanged(t *testing.T) {
	tab := NewTable()
	a := member("c1", "broker-a", 6, 8, "10.0.0.1:10911")
	tab.Apply("ns", Update{"t1", route(a)}, Update{"t2", route(a)})
	sub := tab.Subscribe()
	defer sub.Close()
	v := tab.Version()

	// Reporting the same route again changes nothing.
	if got := tab.Apply("ns", Update{"t1", route(a)}); got != v {
		t.Fatalf("unchanged route moved version %d -> %d", v, got)
	}
	if _, ok, _ := sub.TryNext(); ok {
		t.Fatal("change set for a no-op")
	}

	// A perm change on one topic: that topic and the new broker set, nothing else.
	ro := a
	ro.Perm = PermRead
	tab.Apply("ns", Update{"t1", route(ro)})
	cs := nextNow(t, sub)
	if got := keys(cs.Topics); !slices.Equal(got, []string{"t1"}) {
		t.Fatalf("changed topics = %v", got)
	}
	newSet := tab.Topic("t1").BrokerSet
	if got := keys(cs.BrokerSets); !slices.Equal(got, []string{newSet.Hash}) {
		t.Fatalf("changed sets = %v, want the new set %s", got, newSet.Hash)
	}
	if cs.Version != v+1 || tab.Topic("t1").Version != v+1 {
		t.Fatalf("version = %d, topic version = %d, want %d", cs.Version, tab.Topic("t1").Version, v+1)
	}

	// Moving the last topic off a shape removes that set from the served model.
	oldSet := tab.Topic("t2").BrokerSet
	tab.Apply("ns", Update{"t2", route(ro)})
	cs = nextNow(t, sub)
	if got := keys(cs.BrokerSets); !slices.Equal(got, []string{oldSet.Hash}) || tab.BrokerSet(oldSet.Hash) != nil {
		t.Fatalf("changed sets = %v; old set still served: %v", got, tab.BrokerSet(oldSet.Hash) != nil)
	}

	// Deleting a topic names it; deleting an unknown one changes nothing.
	tab.Apply("ns", Update{Topic: "t1"}, Update{Topic: "nope"})
	cs = nextNow(t, sub)
	if got := keys(cs.Topics); !slices.Equal(got, []string{"t1"}) || tab.Topic("t1") != nil {
		t.Fatalf("delete: changed %v, topic %v", got, tab.Topic("t1"))
	}
}

func TestSourcesMerge(t *testing.T) {
	tab := NewTable()
	a := member("c1", "broker-a", 6, 8, "10.0.0.1:10911")
	b := member("c1", "broker-b", 6, 8, "10.0.1.1:10911")
	aOther := member("c1", "broker-a", 4, 8, "10.0.0.9:10911")
	tab.Apply("ns1", Update{"t", route(a)})
	tab.Apply("ns2", Update{"t", route(aOther, b)})
	got := tab.Topic("t").BrokerSet
	if len(got.Members) != 2 || got.Member("broker-a").Perm != 6 || got.Member("broker-b") == nil {
		t.Fatalf("merged = %+v (ns1 should win broker-a, ns2 adds broker-b)", got.Members)
	}
	if tab.SourceTopic("ns2", "t").Member("broker-a").Perm != 4 {
		t.Fatal("per-source route lost")
	}
	// One source withdrawing the topic leaves the other's view.
	tab.Apply("ns1", Update{Topic: "t"})
	if got := tab.Topic("t").BrokerSet; got.Member("broker-a").Perm != 4 {
		t.Fatalf("after ns1 withdrew: %+v", got.Members)
	}
	tab.RemoveSource("ns2")
	if tab.Topic("t") != nil {
		t.Fatal("topic survived the removal of every source")
	}
	if topics, sets := tab.Stats(); topics != 0 || sets != 0 || len(tab.sets) != 0 {
		t.Fatalf("leftovers: %d topics, %d served sets, %d interned", topics, sets, len(tab.sets))
	}
}

func TestSubscriptionCoalescesAndSnapshotIsConsistent(t *testing.T) {
	tab := NewTable()
	a := member("c1", "broker-a", 6, 8, "10.0.0.1:10911")
	for i := range 100 {
		tab.Apply("ns", Update{fmt.Sprintf("t%d", i), route(a)})
	}
	snap, sub := tab.SubscribeWithSnapshot()
	defer sub.Close()
	if len(snap.Topics) != 100 || len(snap.BrokerSets) != 1 || snap.Version != tab.Version() {
		t.Fatalf("snapshot: %d topics, %d sets, version %d", len(snap.Topics), len(snap.BrokerSets), snap.Version)
	}
	b := member("c1", "broker-b", 6, 8, "10.0.1.1:10911")
	for round := range 50 {
		tab.Apply("ns", Update{fmt.Sprintf("t%d", round%5), route(a, b)})
		tab.Apply("ns", Update{fmt.Sprintf("t%d", round%5), route(a)})
	}
	cs, err := sub.Next(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(cs.Topics) != 5 || cs.Version != tab.Version() {
		t.Fatalf("coalesced %d topics at version %d, want 5 at %d", len(cs.Topics), cs.Version, tab.Version())
	}
	if len(snap.Topics) != 100 || snap.Topics["t0"].BrokerSet.Hash != tab.Topic("t0").BrokerSet.Hash {
		t.Fatal("snapshot was modified by later writes")
	}
}

func TestSubscriptionConcurrentWriters(t *testing.T) {
	tab := NewTable()
	sub := tab.Subscribe()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				tab.Apply(fmt.Sprintf("src%d", w), Update{fmt.Sprintf("t%d", i), route(member("c", fmt.Sprintf("b%d", i%3), 6, 4, "a:1"))})
			}
		}()
	}
	seen := map[string]struct{}{}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for len(seen) < 200 {
		cs, err := sub.Next(ctx)
		if err != nil {
			t.Fatalf("after %d topics: %v", len(seen), err)
		}
		for n := range cs.Topics {
			seen[n] = struct{}{}
		}
	}
	<-done
	sub.Close()
	if _, err := sub.Next(ctx); err != ErrClosed {
		t.Fatalf("Next after Close: %v", err)
	}
}

func TestBrokersMerge(t *testing.T) {
	tab := NewTable()
	sub := tab.Subscribe()
	defer sub.Close()
	tab.SetBrokers("ns1", []Broker{{Cluster: "c", Name: "b", Addrs: []BrokerAddr{{1, "s:1"}, {0, "m:1"}}}})
	tab.SetBrokers("ns2", []Broker{{Cluster: "c", Name: "a", Addrs: []BrokerAddr{{0, "x:1"}}}})
	got := tab.Brokers()
	if len(got) != 2 || got[0].Name != "a" || got[1].Addrs[0].Addr != "m:1" {
		t.Fatalf("brokers = %+v", got)
	}
	if cs := nextNow(t, sub); !cs.Brokers {
		t.Fatal("broker change not reported")
	}
	v := tab.Version()
	tab.SetBrokers("ns1", []Broker{{Cluster: "c", Name: "b", Addrs: []BrokerAddr{{0, "m:1"}, {1, "s:1"}}}})
	if tab.Version() != v {
		t.Fatal("same brokers in another order moved the version")
	}
}

func TestInterest(t *testing.T) {
	in := NewTable().Interest()
	rd := in.Follow()
	defer rd.Close()
	r1 := in.Want("a", "b")
	r2 := in.Want("b")
	<-rd.Changed()
	added, removed := rd.Drain()
	if !slices.Equal(added, []string{"a", "b"}) || removed != nil {
		t.Fatalf("drain = %v %v", added, removed)
	}
	r1()
	r1()
	added, removed = rd.Drain()
	if added != nil || !slices.Equal(removed, []string{"a"}) || !in.Wanted("b") || in.Wanted("a") {
		t.Fatalf("after release: %v %v, wanted b=%v", added, removed, in.Wanted("b"))
	}
	r3 := in.Want("c")
	r3()
	r2()
	added, removed = rd.Drain()
	if added != nil || !slices.Equal(removed, []string{"b"}) || len(in.Topics()) != 0 {
		t.Fatalf("want+release before drain: %v %v %v", added, removed, in.Topics())
	}
}
