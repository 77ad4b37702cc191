package routing

import (
	"regexp"
	"slices"
	"testing"
	"time"
)

// policyTable holds "orders" on three groups: a1 and a2 in cluster A, b1 in cluster B, all read-write.
func policyTable(t *testing.T) *Table {
	t.Helper()
	tab := NewTable()
	tab.SetBrokers("ns", []Broker{{Cluster: "A", Name: "a1"}, {Cluster: "A", Name: "a2"}, {Cluster: "B", Name: "b1"}})
	tab.Apply("ns",
		Update{"orders", route(member("A", "a1", 6, 8, "10.0.0.1:10911", "10.0.0.2:10911"),
			member("A", "a2", 6, 8, "10.0.1.1:10911"), member("B", "b1", 6, 4, "10.1.0.1:10911"))},
		Update{"payments", route(member("A", "a1", 6, 8, "10.0.0.1:10911", "10.0.0.2:10911"))})
	return tab
}

func served(t *testing.T, tab *Table, topic, group string) *Member {
	t.Helper()
	m := tab.Topic(topic).BrokerSet.Member(group)
	if m == nil {
		t.Fatalf("%s is not served on %s: %+v", topic, group, tab.Topic(topic).BrokerSet.Members)
	}
	c := *m
	return &c
}

func exact(names ...string) TopicMatch { return TopicMatch{Exact: names} }

func TestWeightedSendSplitsEachBackendOverItsGroups(t *testing.T) {
	tab := policyTable(t)
	tab.SetPolicies([]Policy{{Name: "ns/migrate", Match: exact("orders"), Send: []Backend{
		{BrokerCluster: "A", Weight: 80, Weighted: true}, {BrokerCluster: "B", Weight: 20, Weighted: true}}}})
	a1, a2, b1 := served(t, tab, "orders", "a1"), served(t, tab, "orders", "a2"), served(t, tab, "orders", "b1")
	if a1.Weight+a2.Weight != 4*b1.Weight || a1.Weight != a2.Weight || b1.Weight == 0 {
		t.Fatalf("weights a1 %d, a2 %d, b1 %d: want cluster A 80%%, B 20%%, split evenly", a1.Weight, a2.Weight, b1.Weight)
	}
	if a1.Perm != 6 || a1.SourcePerm != 0 {
		t.Fatalf("a weighted group keeps its perm: %+v", a1)
	}
	if tab.Topic("payments").BrokerSet.Members[0].Weight != 0 {
		t.Fatal("a topic the policy does not match got weights")
	}

	// Weight 0 takes a backend out of sends: its groups are served read-only, and acks still reach them.
	tab.SetPolicies([]Policy{{Name: "ns/migrate", Match: exact("orders"), Send: []Backend{
		{BrokerCluster: "A", Weight: 100, Weighted: true}, {BrokerCluster: "B", Weight: 0, Weighted: true}}}})
	b1 = served(t, tab, "orders", "b1")
	if b1.Perm != PermRead || b1.Weight != 0 || !b1.AcksReadable() || b1.Writable() {
		t.Fatalf("b1 under weight 0: %+v", b1)
	}
}

func TestDrainConsumeAndRouteQueryRules(t *testing.T) {
	tab := policyTable(t)
	tab.SetPolicies([]Policy{{Name: "ns/p", Match: exact("orders"), Drain: []string{"a2"},
		Consume: []Backend{{BrokerNames: []string{"a1", "a2"}}}}})
	if a2 := served(t, tab, "orders", "a2"); a2.Writable() || !a2.Readable() || a2.SourcePerm != 6 {
		t.Fatalf("drained a2 must be read-only: %+v", a2)
	}
	if b1 := served(t, tab, "orders", "b1"); b1.Readable() || !b1.Writable() || !b1.AcksReadable() {
		t.Fatalf("b1 outside consume must be write-only and still take acks: %+v", b1)
	}
	if a1 := served(t, tab, "orders", "a1"); a1.Perm != 6 || a1.SourcePerm != 0 {
		t.Fatalf("a1 is untouched: %+v", a1)
	}

	tab.SetPolicies([]Policy{{Name: "ns/p", Match: exact("orders", "payments"), RouteQuery: []Backend{{BrokerCluster: "B"}}}})
	if got := tab.Topic("orders").BrokerSet.Members; len(got) != 1 || got[0].BrokerName != "b1" {
		t.Fatalf("routeQuery B left %+v", got)
	}
	// payments has no group in B: it is served as the NameServers report it, never as an empty route.
	if got := tab.Topic("payments").BrokerSet.Members; len(got) != 1 || got[0].BrokerName != "a1" {
		t.Fatalf("payments under a routeQuery that names none of its groups: %+v", got)
	}
}

func TestRemovingAPolicyRestoresTheSourcesRoute(t *testing.T) {
	tab := policyTable(t)
	before := tab.Topic("orders").BrokerSet
	sub := tab.Subscribe()
	defer sub.Close()
	tab.SetPolicies([]Policy{{Name: "ns/p", Match: exact("orders"), Drain: []string{"a1"}}})
	if cs := nextNow(t, sub); !slices.Equal(keys(cs.Topics), []string{"orders"}) {
		t.Fatalf("a policy on orders changed %v", keys(cs.Topics))
	}
	if tab.Topic("orders").BrokerSet == before {
		t.Fatal("the policy changed nothing")
	}
	tab.SetPolicies(nil)
	if tab.Topic("orders").BrokerSet != before {
		t.Fatalf("without the policy orders is %+v, want the NameServer's route back", tab.Topic("orders").BrokerSet.Members)
	}
}

func TestConflictingPoliciesOldestWins(t *testing.T) {
	tab := policyTable(t)
	now := time.Now()
	young := Policy{Name: "a/young", Created: now, Match: TopicMatch{Prefix: []string{"ord"}}, Drain: []string{"a1"}}
	old := Policy{Name: "z/old", Created: now.Add(-time.Hour), Match: TopicMatch{Regex: regexp.MustCompile(`^(?:orders|payments)$`)},
		Drain: []string{"b1"}}
	tab.SetPolicies([]Policy{young, old})
	if !served(t, tab, "orders", "a1").Writable() || served(t, tab, "orders", "b1").Writable() {
		t.Fatal("orders follows the younger policy")
	}
	ys, os := tab.PolicyStatus("a/young"), tab.PolicyStatus("z/old")
	if ys.Matched != 0 || ys.Overridden != 1 || !slices.Equal(ys.OverriddenBy, []string{"z/old"}) {
		t.Fatalf("young: %+v", ys)
	}
	if os.Matched != 2 || os.Overridden != 0 {
		t.Fatalf("old: %+v", os)
	}
	// Same age: the lower name wins, whatever the order given.
	young.Created = old.Created
	tab.SetPolicies([]Policy{old, young})
	if served(t, tab, "orders", "a1").Writable() {
		t.Fatal("a/young, the lower name, should win at equal age")
	}
	// A topic that appears later follows the same rule.
	tab.Apply("ns", Update{"orders-eu", route(member("A", "a1", 6, 8, "10.0.0.1:10911"))})
	if served(t, tab, "orders-eu", "a1").Writable() {
		t.Fatal("a new topic ignored the policy it matches")
	}
	if st := tab.PolicyStatus("a/young"); st.Matched != 2 {
		t.Fatalf("young after a new topic: %+v", st)
	}
	// The overridden policies are kept beside a topic while it has any, and go with the topic.
	checkIndex(t, tab)
	if len(tab.overridden) != 1 {
		t.Fatalf("overridden policies kept for %d topics, want orders only", len(tab.overridden))
	}
	tab.Apply("ns", Update{Topic: "orders"})
	checkIndex(t, tab)
	if st := tab.PolicyStatus("z/old"); st.Overridden != 0 || len(tab.overridden) != 0 {
		t.Fatalf("old after orders went: %+v; overridden policies kept for %d topics", st, len(tab.overridden))
	}
}

func TestOrderedTopicKeepsAVanishedGroup(t *testing.T) {
	tab := policyTable(t)
	tab.SetPolicies([]Policy{{Name: "ns/o", Match: exact("orders"), Ordered: true}})
	// b1's broker goes away: the NameServer reports orders on A only.
	tab.Apply("ns", Update{"orders", route(member("A", "a1", 6, 8, "10.0.0.1:10911", "10.0.0.2:10911"),
		member("A", "a2", 6, 8, "10.0.1.1:10911"))})
	if b1 := served(t, tab, "orders", "b1"); b1.WriteQueueNums != 4 || !b1.Writable() {
		t.Fatalf("ordered orders lost b1's queues: %+v", b1)
	}
	// It comes back with the same queues: nothing moves.
	v := tab.Topic("orders").BrokerSet
	tab.Apply("ns", Update{"orders", route(member("A", "a1", 6, 8, "10.0.0.1:10911", "10.0.0.2:10911"),
		member("A", "a2", 6, 8, "10.0.1.1:10911"), member("B", "b1", 6, 4, "10.1.0.1:10911"))})
	if tab.Topic("orders").BrokerSet != v {
		t.Fatal("the returning group changed the served route")
	}
	// Shrinking an ordered topic is deliberate: without ordered, the vanished group leaves.
	tab.Apply("ns", Update{"orders", route(member("A", "a1", 6, 8, "10.0.0.1:10911", "10.0.0.2:10911"))})
	tab.SetPolicies(nil)
	if got := tab.Topic("orders").BrokerSet.Members; len(got) != 1 {
		t.Fatalf("not ordered any more, orders still has %+v", got)
	}
}

// TestPopRuleChangesTheTopicNotItsBrokerSet: a pop rule is route-level. It reaches each matched topic (a new
// version, in the change set), while the topic keeps its broker set, shared with the topics of the same shape; a
// change of the groups or the invisible time is a change again, the same rule under a new version is not.
func TestPopRuleChangesTheTopicNotItsBrokerSet(t *testing.T) {
	tab := policyTable(t)
	before, payments := tab.Topic("orders"), tab.Topic("payments")
	sub := tab.Subscribe()
	defer sub.Close()
	pop := func(version string, invisible time.Duration, groups ...string) []Policy {
		return []Policy{{Name: "ns/pop", Version: version, Match: exact("orders"), Pop: NewPopPolicy(groups, invisible)}}
	}
	tab.SetPolicies(pop("1", 0, "g2", "g1", "g2"))
	after := tab.Topic("orders")
	if after.BrokerSet != before.BrokerSet || after.Version == before.Version {
		t.Fatalf("under a pop rule: broker set %s → %s, version %d → %d; want the same set, a new version",
			before.BrokerSet.Hash, after.BrokerSet.Hash, before.Version, after.Version)
	}
	if want := (&PopPolicy{ConsumerGroups: []string{"g1", "g2"}, InvisibleTime: DefaultInvisibleTime}); !after.Pop.Equal(want) {
		t.Fatalf("pop %+v, want %+v", after.Pop, want)
	}
	if tab.Topic("payments") != payments {
		t.Fatal("a topic the rule does not match changed")
	}
	cs, ok, _ := sub.TryNext()
	if _, changed := cs.Topics["orders"]; !ok || !changed || len(cs.BrokerSets) != 0 {
		t.Fatalf("change set %+v: want orders, and no broker set", cs)
	}

	tab.SetPolicies(pop("2", 0, "g1", "g2")) // the same rule, a new version: nothing to serve again
	if tab.Topic("orders") != after {
		t.Fatal("the same pop rule under a new version changed the topic")
	}
	tab.SetPolicies(pop("3", 8*time.Second, "g1", "g2"))
	if got := tab.Topic("orders"); got.Version == after.Version || got.Pop.InvisibleTime != 8*time.Second || got.BrokerSet != before.BrokerSet {
		t.Fatalf("a new invisible time: %+v", got)
	}
	tab.SetPolicies(nil)
	if got := tab.Topic("orders"); got.Pop != nil || got.BrokerSet != before.BrokerSet {
		t.Fatalf("without the rule: %+v", got)
	}
}

func TestPolicyStatusNamesUnknownBackends(t *testing.T) {
	tab := policyTable(t)
	tab.SetPolicies([]Policy{{Name: "ns/p", Match: exact("orders"), Send: []Backend{{BrokerCluster: "C"}, {BrokerNames: []string{"a1", "zz"}}},
		Drain: []string{"yy"}}})
	if got := tab.PolicyStatus("ns/p").UnknownBackends; !slices.Equal(got, []string{"broker yy", "broker zz", "brokerCluster C"}) {
		t.Fatalf("unknown backends %v", got)
	}
}

func TestBindingsScopeProxies(t *testing.T) {
	tab := NewTable()
	sub := tab.Subscribe()
	defer sub.Close()
	tab.SetBindings([]Binding{
		{Name: "ns/orders", Selects: func(p Proxy) bool { return p.Namespace == "shop" && p.Labels["app"] == "orders" },
			Topics: []string{"orders", "payments"}, ConsumerGroups: []string{"orders-cg"}},
		{Name: "ns/all", Selects: func(p Proxy) bool { return p.ID == "audit-1" }, Topics: []string{"orders"}},
	})
	if cs := nextNow(t, sub); !cs.Scopes {
		t.Fatal("a binding change did not say scopes changed")
	}
	got := tab.Bound(Proxy{ID: "x", Namespace: "shop", Labels: map[string]string{"app": "orders"}})
	if !slices.Equal(got, []string{"%RETRY%orders-cg", "orders", "payments"}) {
		t.Fatalf("bound %v", got)
	}
	if got := tab.Bound(Proxy{ID: "audit-1"}); !slices.Equal(got, []string{"orders"}) {
		t.Fatalf("bound by node id: %v", got)
	}
	if got := tab.Bound(Proxy{ID: "other", Namespace: "shop"}); len(got) != 0 {
		t.Fatalf("an unbound proxy got %v", got)
	}

	p := tab.Proxies()
	r1 := p.Connect(Proxy{ID: "n1", Namespace: "shop", Labels: map[string]string{"app": "orders"}})
	r2 := p.Connect(Proxy{ID: "n1", Namespace: "shop", Labels: map[string]string{"app": "orders"}}) // second stream
	r3 := p.Connect(Proxy{ID: "n2", Namespace: "shop"})
	inShop := func(x Proxy) bool { return x.Namespace == "shop" }
	if n := p.Count(inShop); n != 2 {
		t.Fatalf("%d proxies in shop, want 2 (n1 once)", n)
	}
	r1()
	r1() // a second release does nothing
	r3()
	if n := p.Count(inShop); n != 1 {
		t.Fatalf("%d after releases, want 1", n)
	}
	r2()
}

func TestAckRuleKeepsAcksForAnUnreadableGroup(t *testing.T) {
	tab := policyTable(t)
	// The NameServer makes b1 write-only (its read perm wiped): pops of it made before can no longer be acked...
	tab.Apply("ns", Update{"orders", route(member("A", "a1", 6, 8, "10.0.0.1:10911", "10.0.0.2:10911"),
		member("A", "a2", 6, 8, "10.0.1.1:10911"), member("B", "b1", PermWrite, 4, "10.1.0.1:10911"))})
	if served(t, tab, "orders", "b1").AcksReadable() {
		t.Fatal("a write-only group takes acks without a rule")
	}
	// ...unless a policy's ack rule names it.
	tab.SetPolicies([]Policy{{Name: "ns/acks", Match: exact("orders"), Ack: []Backend{{BrokerCluster: "B"}}}})
	if b1 := served(t, tab, "orders", "b1"); !b1.AcksReadable() || b1.Readable() {
		t.Fatalf("b1 under the ack rule: %+v", b1)
	}
	if st := tab.PolicyStatus("ns/acks"); len(st.UnknownBackends) != 0 || st.Matched != 1 {
		t.Fatalf("status %+v", st)
	}
}

func TestSetPoliciesTouchesOnlyTheChangedPolicysTopics(t *testing.T) {
	tab := policyTable(t)
	orders := Policy{Name: "ns/orders", Version: "1", Match: exact("orders"), Drain: []string{"a1"}}
	payments := Policy{Name: "ns/payments", Version: "1", Match: exact("payments"), Drain: []string{"a1"}}
	tab.SetPolicies([]Policy{orders, payments})
	sub := tab.Subscribe()
	defer sub.Close()
	payments.Version, payments.Drain = "2", nil
	tab.SetPolicies([]Policy{orders, payments})
	if cs := nextNow(t, sub); !slices.Equal(keys(cs.Topics), []string{"payments"}) {
		t.Fatalf("changing the payments policy changed %v", keys(cs.Topics))
	}
	if served(t, tab, "orders", "a1").Writable() || !served(t, tab, "payments", "a1").Writable() {
		t.Fatal("policies not as set")
	}
	if st := tab.PolicyStatus("ns/orders"); st.Matched != 1 {
		t.Fatalf("orders policy status %+v", st)
	}
	tab.SetPolicies([]Policy{orders})
	if st := tab.PolicyStatus("ns/payments"); st.Matched != 0 {
		t.Fatalf("a removed policy still counts %+v", st)
	}
}

func TestRulesThatNameNoGroupOfATopicAreNotAppliedToIt(t *testing.T) {
	tab := policyTable(t)
	// payments is on a1 only: a send rule for cluster B and a consume rule for b1 would leave it nothing.
	tab.SetPolicies([]Policy{{Name: "ns/p", Match: exact("orders", "payments"),
		Send:    []Backend{{BrokerCluster: "B", Weight: 100, Weighted: true}, {BrokerCluster: "A", Weight: 0, Weighted: true}},
		Consume: []Backend{{BrokerNames: []string{"b1"}}}}})
	if a1 := served(t, tab, "payments", "a1"); !a1.Writable() || !a1.Readable() || a1.Weight != 0 {
		t.Fatalf("payments blackholed by rules naming none of its groups: %+v", a1)
	}
	if a1, b1 := served(t, tab, "orders", "a1"), served(t, tab, "orders", "b1"); a1.Writable() || a1.Readable() || !b1.Writable() || b1.Weight == 0 {
		t.Fatalf("orders under the same rules: a1 %+v, b1 %+v", a1, b1)
	}
}

func TestAWeightZeroBackendDoesNotClaimAGroup(t *testing.T) {
	tab := policyTable(t)
	// b1 is in cluster B (weight 0) and named by a weighted backend: it takes that backend's weight.
	tab.SetPolicies([]Policy{{Name: "ns/p", Match: exact("orders"), Send: []Backend{
		{BrokerCluster: "B", Weight: 0, Weighted: true}, {BrokerNames: []string{"b1", "a1"}, Weight: 100, Weighted: true}}}})
	a1, b1 := served(t, tab, "orders", "a1"), served(t, tab, "orders", "b1")
	if !b1.Writable() || b1.Weight != a1.Weight || a1.Weight == 0 || served(t, tab, "orders", "a2").Writable() {
		t.Fatalf("a1 %+v, b1 %+v", a1, b1)
	}
}

// SetPolicies names the policies whose status it changed: those that gain or lose topics, or a winner over them,
// and never one whose topics no other policy touches.
func TestSetPoliciesNamesTheStatusesItChanged(t *testing.T) {
	tab := policyTable(t)
	tab.Apply("ns", Update{"audit", route(member("A", "a1", 6, 8, "10.0.0.1:10911"))})
	now := time.Now()
	alone := Policy{Name: "ns/alone", Version: "1", Created: now.Add(-2 * time.Hour), Match: exact("audit")}
	old := Policy{Name: "ns/old", Version: "1", Created: now.Add(-time.Hour), Match: exact("orders")}
	young := Policy{Name: "ns/young", Version: "1", Created: now, Match: TopicMatch{Prefix: []string{"o", "p"}}}
	oldest := Policy{Name: "ns/oldest", Version: "1", Created: now.Add(-3 * time.Hour), Match: exact("orders")}
	steps := []struct {
		what     string
		policies []Policy
		want     []string
	}{
		{"two policies, no overlap", []Policy{alone, old}, []string{"ns/alone", "ns/old"}},
		{"the same again", []Policy{alone, old}, nil},
		{"a younger one overlapping: only it is overridden", []Policy{alone, old, young}, []string{"ns/young"}},
		{"a new version that matches the same", []Policy{alone, withVersion(old, "2"), young}, nil},
		{"an older one takes orders from old; young's winner there changes", []Policy{alone, old, young, oldest},
			[]string{"ns/old", "ns/oldest", "ns/young"}},
		{"the winner goes: old wins orders again", []Policy{alone, old, young}, []string{"ns/old", "ns/oldest", "ns/young"}},
		{"old goes: young wins orders", []Policy{alone, young}, []string{"ns/old", "ns/young"}},
		{"young goes", []Policy{alone}, []string{"ns/young"}},
	}
	for _, s := range steps {
		if _, got := tab.SetPolicies(s.policies); !slices.Equal(got, s.want) {
			t.Fatalf("%s: status changed for %v, want %v", s.what, got, s.want)
		}
	}
	checkIndex(t, tab)
}

func withVersion(p Policy, v string) Policy { p.Version = v; return p }
