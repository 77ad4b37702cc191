package routing

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
)

// checkIndex verifies that the sorted names are exactly the table's topics, and that each broker set's topics are
// exactly those served with it.
func checkIndex(t *testing.T, tab *Table) {
	t.Helper()
	tab.mu.RLock()
	defer tab.mu.RUnlock()
	tab.names.check(t, slices.Sorted(maps.Keys(tab.topics)))
	want := map[*setEntry]int{}
	for name, e := range tab.topics {
		se := tab.sets[e.topic.BrokerSet.Hash]
		if se == nil || se.set != e.topic.BrokerSet {
			t.Fatalf("%s is served with a broker set the table does not hold", name)
		}
		if e.slot >= len(se.topics) || se.topics[e.slot] != e {
			t.Fatalf("%s is not in its place among its broker set's topics", name)
		}
		want[se]++
	}
	for name, e := range tab.topics {
		if also := tab.overridden[e]; len(also) == 0 && also != nil || len(also) > 0 && e.policy == nil {
			t.Fatalf("%s: overridden policies %v, policy %v", name, also, e.policy)
		}
	}
	for e := range tab.overridden {
		if tab.topics[e.topic.Name] != e {
			t.Fatalf("overridden policies kept for %s, which is gone", e.topic.Name)
		}
	}
	for hash, se := range tab.sets {
		if len(se.topics) != want[se] {
			t.Fatalf("broker set %s lists %d topics, %d are served with it", hash, len(se.topics), want[se])
		}
	}
}

func TestTopicNamesPagesByPrefix(t *testing.T) {
	tab := NewTable()
	a := route(member("c1", "broker-a", 6, 8, "10.0.0.1:10911"))
	var all []string
	for i := range 3000 {
		for _, p := range []string{"orders-", "payments-", "%RETRY%orders-"} {
			name := fmt.Sprintf("%s%04d", p, i)
			all = append(all, name)
			tab.Apply("ns", Update{name, a})
		}
	}
	slices.Sort(all)
	checkIndex(t, tab)

	names, total := tab.TopicNames("", "", 5)
	if total != 9000 || !slices.Equal(names, all[:5]) {
		t.Fatalf("first page: %q of %d", names, total)
	}
	names, total = tab.TopicNames("payments-", "", 3)
	if total != 3000 || !slices.Equal(names, []string{"payments-0000", "payments-0001", "payments-0002"}) {
		t.Fatalf("payments-: %q of %d", names, total)
	}
	if names, total = tab.TopicNames("payments-00", "", 0); total != 100 || len(names) != 100 || names[99] != "payments-0099" {
		t.Fatalf("payments-00, no limit: %d names of %d", len(names), total)
	}
	if names, total = tab.TopicNames("nothing", "", 10); total != 0 || len(names) != 0 {
		t.Fatalf("unknown prefix: %q of %d", names, total)
	}
	if names, total = tab.TopicNames("orders-2999", "", 10); total != 1 || !slices.Equal(names, []string{"orders-2999"}) {
		t.Fatalf("a whole name as the prefix: %q of %d", names, total)
	}
	// Paging: each page after the last name of the previous one, with every prefix, gives every name once.
	for _, prefix := range []string{"", "orders-", "%RETRY%", "orders-1", "payments-2999"} {
		var got []string
		after := ""
		for {
			page, total := tab.TopicNames(prefix, after, 700)
			if want := countPrefix(all, prefix); total != want {
				t.Fatalf("prefix %q: total %d, want %d", prefix, total, want)
			}
			got = append(got, page...)
			if len(page) < 700 {
				break
			}
			after = page[len(page)-1]
		}
		var want []string
		for _, n := range all {
			if strings.HasPrefix(n, prefix) {
				want = append(want, n)
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("prefix %q: paging gave %d names, want %d", prefix, len(got), len(want))
		}
	}
	// after below the prefix starts at the prefix; after a name that is gone resumes at the next one.
	if names, _ := tab.TopicNames("payments-", "orders-", 1); !slices.Equal(names, []string{"payments-0000"}) {
		t.Fatalf("after below the prefix: %q", names)
	}
	tab.Apply("ns", Update{Topic: "payments-0005"})
	if names, total := tab.TopicNames("payments-", "payments-0005", 1); total != 2999 || !slices.Equal(names, []string{"payments-0006"}) {
		t.Fatalf("after a removed name: %q of %d", names, total)
	}
	checkIndex(t, tab)
}

func countPrefix(names []string, prefix string) int {
	n := 0
	for _, s := range names {
		if strings.HasPrefix(s, prefix) {
			n++
		}
	}
	return n
}

func TestIndexFollowsEveryWrite(t *testing.T) {
	tab := NewTable()
	a := member("c1", "broker-a", 6, 8, "10.0.0.1:10911")
	b := member("c1", "broker-b", 6, 8, "10.0.1.1:10911")
	for i := range 2500 {
		tab.Apply("ns1", Update{fmt.Sprintf("t%05d", i), route(a)})
		if i%3 == 0 {
			tab.Apply("ns2", Update{fmt.Sprintf("t%05d", i), route(b)})
		}
	}
	checkIndex(t, tab)
	// One source withdrawing a topic another still reports keeps it; the last withdrawal removes it.
	tab.Apply("ns1", Update{Topic: "t00000"}, Update{Topic: "t00001"})
	if names, _ := tab.TopicNames("t0000", "", 3); !slices.Equal(names, []string{"t00000", "t00002", "t00003"}) {
		t.Fatalf("after withdrawals: %q", names)
	}
	tab.SetPolicies([]Policy{{Name: "p", Version: "1", Match: TopicMatch{Prefix: []string{"t001"}}, Drain: []string{"broker-a"}}})
	checkIndex(t, tab)
	// RemoveSource withdraws in chunks: ns1's 2,498 remaining topics go, ns2's stay.
	if got := len(tab.SourceTopics("ns1")); got != 2498 {
		t.Fatalf("ns1 reports %d topics", got)
	}
	tab.RemoveSource("ns1")
	checkIndex(t, tab)
	if n, _ := tab.Stats(); n != 834 || len(tab.SourceTopics("ns1")) != 0 || len(tab.SourceTopics("ns2")) != 834 {
		t.Fatalf("after removing ns1: %d topics, ns1 %d, ns2 %d", n, len(tab.SourceTopics("ns1")), len(tab.SourceTopics("ns2")))
	}
	tab.RemoveSource("ns2")
	checkIndex(t, tab)
	if names, total := tab.TopicNames("", "", 0); total != 0 || len(names) != 0 {
		t.Fatalf("empty table lists %q of %d", names, total)
	}
}

func TestSourceTopicsSorted(t *testing.T) {
	tab := NewTable()
	a := route(member("c1", "broker-a", 6, 8, "10.0.0.1:10911"))
	var want []string
	for i := 3*passChunk - 1; i >= 0; i-- {
		name := fmt.Sprintf("t%05d", i)
		tab.Apply("ns", Update{name, a})
		if i%2 == 0 {
			tab.Apply("other", Update{name, a})
			want = append(want, name)
		}
	}
	slices.Sort(want)
	if got := tab.SourceTopics("other"); !slices.Equal(got, want) {
		t.Fatalf("SourceTopics gave %d names, want %d sorted", len(got), len(want))
	}
}

// Range lets go of the lock between chunks and while fn runs: fn may write to the table, and a concurrent writer
// goes on; every topic present throughout is visited once, in name order.
func TestRangeInChunksWhileTheTableChanges(t *testing.T) {
	tab := NewTable()
	a := route(member("c1", "broker-a", 6, 8, "10.0.0.1:10911"))
	b := route(member("c1", "broker-b", 6, 8, "10.0.1.1:10911"))
	const n = 5 * passChunk
	for i := range n {
		tab.Apply("ns", Update{fmt.Sprintf("stable-%05d", i), a})
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			name := fmt.Sprintf("churn-%05d", i%3000)
			if i%2 == 0 {
				tab.Apply("ns", Update{name, a})
			} else {
				tab.Apply("ns", Update{Topic: name})
			}
		}
	})
	seen := map[string]int{}
	last := ""
	tab.Range(func(tp *Topic) bool {
		if tp.Name <= last {
			t.Errorf("%q visited after %q", tp.Name, last)
		}
		last = tp.Name
		seen[tp.Name]++
		if strings.HasPrefix(tp.Name, "stable-") && len(seen)%500 == 0 {
			tab.Apply("ns", Update{tp.Name, b}) // a write from fn: no deadlock
		}
		return true
	})
	close(stop)
	wg.Wait()
	for i := range n {
		if name := fmt.Sprintf("stable-%05d", i); seen[name] != 1 {
			t.Fatalf("%s visited %d times", name, seen[name])
		}
	}
	checkIndex(t, tab)
	// fn returning false stops the pass.
	visited := 0
	tab.Range(func(*Topic) bool { visited++; return visited < 1500 })
	if visited != 1500 {
		t.Fatalf("Range went on after false: %d visits", visited)
	}
}

// TestWithdrawInChunks: Withdraw takes a source's word back for many topics a chunk at a time (one version each),
// leaving the topics other sources still report.
func TestWithdrawInChunks(t *testing.T) {
	tab := NewTable()
	a := route(member("c1", "broker-a", 6, 8, "10.0.0.1:10911"))
	var names []string
	for i := range 2*passChunk + 500 {
		name := fmt.Sprintf("w%05d", i)
		names = append(names, name)
		tab.Apply("ns", Update{name, a})
	}
	tab.Apply("other", Update{names[0], a})
	before := tab.Version()
	if v := tab.Withdraw("ns", names); v != before+3 || tab.Version() != v {
		t.Fatalf("Withdraw of %d topics went from version %d to %d, want 3 chunks", len(names), before, v)
	}
	checkIndex(t, tab)
	if n, _ := tab.Stats(); n != 1 || tab.Topic(names[0]) == nil || len(tab.SourceTopics("ns")) != 0 {
		t.Fatalf("after Withdraw: %d topics, ns reports %d", n, len(tab.SourceTopics("ns")))
	}
	if v := tab.Withdraw("ns", nil); v != tab.Version() {
		t.Fatal("an empty Withdraw moved the version")
	}
}

// usingGroups is TopicsUsingGroups the slow way: a pass over every topic.
func usingGroups(tab *Table, groups ...string) []string {
	var out []string
	tab.Range(func(tp *Topic) bool {
		if slices.ContainsFunc(tp.BrokerSet.Members, func(m Member) bool { return slices.Contains(groups, m.BrokerName) }) {
			out = append(out, tp.Name)
		}
		return true
	})
	return out
}

// TopicsUsingGroups names the topics whose served route lists a group, as a pass over the table would, through
// the writes that move topics between broker sets, remove them, and a policy that takes a group out of a route.
func TestTopicsUsingGroupsFollowsEveryWrite(t *testing.T) {
	tab := NewTable()
	a := member("c1", "broker-a", 6, 8, "10.0.0.1:10911")
	b := member("c1", "broker-b", 6, 8, "10.0.1.1:10911")
	c := member("c2", "broker-c", 6, 8, "10.0.2.1:10911")
	shapes := []*Route{route(a), route(a, b), route(b), route(c)}
	for i := range 3000 {
		tab.Apply("ns", Update{fmt.Sprintf("t%05d", i), shapes[i%len(shapes)]})
	}
	check := func(what string) {
		t.Helper()
		checkIndex(t, tab)
		for _, groups := range [][]string{{"broker-a"}, {"broker-b"}, {"broker-c"}, {"broker-a", "broker-c"}, {"nothing"}, nil} {
			got := slices.Sorted(slices.Values(tab.TopicsUsingGroups(groups)))
			if want := usingGroups(tab, groups...); !slices.Equal(got, want) {
				t.Fatalf("%s: %v: %d topics, want %d", what, groups, len(got), len(want))
			}
		}
	}
	check("filled")
	if n := len(tab.TopicsUsingGroups([]string{"broker-a"})); n != 1500 {
		t.Fatalf("broker-a serves %d topics, want 1500", n)
	}
	for i := 0; i < 3000; i += 7 {
		tab.Apply("ns", Update{fmt.Sprintf("t%05d", i), shapes[(i+1)%len(shapes)]}) // another set
	}
	for i := 0; i < 3000; i += 11 {
		tab.Apply("ns", Update{Topic: fmt.Sprintf("t%05d", i)}) // gone
	}
	tab.Apply("ns2", Update{"t00001", route(c)}) // a second source: the union of both
	check("moved and removed")
	// A policy that lists only cluster c2 takes broker-a and broker-b out of the served routes it can.
	tab.SetPolicies([]Policy{{Name: "ns/p", Version: "1", Match: TopicMatch{Prefix: []string{"t00"}}, RouteQuery: []Backend{{BrokerCluster: "c2"}}}})
	check("under a route query")
	tab.SetPolicies(nil)
	tab.RemoveSource("ns")
	check("one source left")
	tab.RemoveSource("ns2")
	if got := tab.TopicsUsingGroups([]string{"broker-c"}); len(got) != 0 {
		t.Fatalf("an empty table names %v", got)
	}
	check("empty")
}

// TopicsUsingGroups lets writers in between chunks: a topic served with the same set throughout is named (perhaps
// twice), whatever happens to the others meanwhile.
func TestTopicsUsingGroupsInChunksWhileTheTableChanges(t *testing.T) {
	tab := NewTable()
	a := route(member("c1", "broker-a", 6, 8, "10.0.0.1:10911"))
	ab := route(member("c1", "broker-a", 6, 8, "10.0.0.1:10911"), member("c1", "broker-b", 6, 8, "10.0.1.1:10911"))
	b := route(member("c1", "broker-b", 6, 8, "10.0.1.1:10911"))
	const n = 5 * passChunk
	for i := range n {
		tab.Apply("ns", Update{fmt.Sprintf("stable-%05d", i), []*Route{a, ab}[i%2]})
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			name := fmt.Sprintf("churn-%05d", i%3000)
			switch i % 3 {
			case 0:
				tab.Apply("ns", Update{name, a})
			case 1:
				tab.Apply("ns", Update{name, b})
			default:
				tab.Apply("ns", Update{Topic: name})
			}
		}
	})
	for range 20 {
		seen := map[string]int{}
		for _, name := range tab.TopicsUsingGroups([]string{"broker-a"}) {
			seen[name]++
		}
		for i := range n {
			if name := fmt.Sprintf("stable-%05d", i); seen[name] == 0 {
				t.Fatalf("%s not named", name)
			}
		}
		for name := range seen {
			if !strings.HasPrefix(name, "stable-") && !strings.HasPrefix(name, "churn-") {
				t.Fatalf("%s named", name)
			}
		}
	}
	close(stop)
	wg.Wait()
	checkIndex(t, tab)
}
