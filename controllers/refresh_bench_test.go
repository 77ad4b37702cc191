package controllers

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/rocketpilot/rocketpilot/crds/v1alpha1"
	"github.com/rocketpilot/rocketpilot/routing"
)

// refreshRoutes is how many TopicRoutes BenchmarkTopicRouteRefresh reconciles.
const refreshRoutes = 10_000

// refreshScenario is 10,000 TopicRoutes over a table of 100 topics, app-000 to app-099: 100 owners, each the
// exact route of one topic, the even ones older than the teams and the odd ones younger; 10 teams, each claiming
// ten of the topics by prefix; and 9,890 services whose exact topics are not in this table (another team's
// NameServer). The list is in a fixed random order, as a new leader lists them.
func refreshScenario() (*routing.Table, *v1alpha1.TopicRouteList) {
	table := routing.NewTable()
	r := &routing.Route{Members: []routing.Member{{Cluster: "c", BrokerName: "b", Perm: 6, ReadQueueNums: 4, WriteQueueNums: 4,
		Addrs: []routing.BrokerAddr{{Addr: "10.0.0.1:10911"}}}}}
	for i := range 100 {
		table.Apply("ns", routing.Update{Topic: fmt.Sprintf("app-%03d", i), Route: r})
	}
	base := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	list := &v1alpha1.TopicRouteList{}
	add := func(name string, created time.Time, sel v1alpha1.TopicSelector) {
		list.Items = append(list.Items, v1alpha1.TopicRoute{
			ObjectMeta: metav1.ObjectMeta{Namespace: "n", Name: name, UID: types.UID(name), Generation: 1,
				CreationTimestamp: metav1.NewTime(created)},
			Spec: v1alpha1.TopicRouteSpec{Topics: sel}})
	}
	for i := range 10 {
		add(fmt.Sprintf("team-%d", i), base, v1alpha1.TopicSelector{Prefix: []string{fmt.Sprintf("app-0%d", i)}})
	}
	for i := range 100 {
		add(fmt.Sprintf("owner-%03d", i), base.Add(time.Duration(2*(i%2)-1)*time.Hour), v1alpha1.TopicSelector{Exact: []string{fmt.Sprintf("app-%03d", i)}})
	}
	for i := range refreshRoutes - 110 {
		add(fmt.Sprintf("svc-%05d", i), base.Add(time.Duration(i)*time.Second), v1alpha1.TopicSelector{Exact: []string{fmt.Sprintf("svc-%05d", i)}})
	}
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(list.Items), func(i, j int) { list.Items[i], list.Items[j] = list.Items[j], list.Items[i] })
	return table, list
}

// refreshEveryOther is what the reconciler did before (kept as the benchmark's baseline): list every TopicRoute (a
// copy of each, as the informer cache's List makes) and queue every other one for a reconcile.
func refreshEveryOther(all *v1alpha1.TopicRouteList, key string, kick chan<- event.GenericEvent) {
	list := all.DeepCopy()
	for i := range list.Items {
		if o := &list.Items[i]; keyOf(o) != key {
			kick <- event.GenericEvent{Object: o}
		}
	}
}

// BenchmarkTopicRouteRefresh measures what a TopicRoute change queues for other TopicRoutes at 10,000 of them,
// before ("every": refreshEveryOther) and after ("concerned": the TopicRoutes the table names, in the refresh
// queue). It runs the reconciler's part without an API server (envtest with 10,000 TopicRoutes, and the N² queue
// of before, would take hours): applyTopicRoute (the policy into the table, the status from it) and the decision.
// events/op counts the reconciles queued; each is a reconcile unless the controller's workqueue holds that
// TopicRoute already. "change=…" changes one TopicRoute: its drain (the same topics), its topics (an owner lets
// its topic go to its team, and takes it back), or an unrelated service's drain. "start" is a new leader
// reconciling every TopicRoute for the first time (a fresh Policies), in list order; distinct is what the refresh
// queue holds at the end, the least the leader reconciles again (the runnable takes the queue while it fills).
// Run it with -benchtime 1x for start: one start takes minutes, most of it in Table.SetPolicies.
func BenchmarkTopicRouteRefresh(b *testing.B) {
	table, list := refreshScenario()
	policies := NewPolicies(table)
	for i := range list.Items {
		tr := &list.Items[i]
		policy, err := PolicyOf(tr)
		if err != nil {
			b.Fatal(err)
		}
		policy.Version = objectVersion(tr)
		policies.routes[keyOf(tr)] = versioned[routing.Policy]{version: policy.Version, value: policy}
	}
	table.SetPolicies(values(policies.routes))

	// counted drains a kick channel and returns the number of events sent on it.
	counted := func() (chan<- event.GenericEvent, func() int) {
		kick, done := make(chan event.GenericEvent), make(chan int)
		go func() {
			n := 0
			for range kick {
				n++
			}
			done <- n
		}()
		return kick, func() int { close(kick); return <-done }
	}
	find := func(name string) *v1alpha1.TopicRoute {
		for i := range list.Items {
			if list.Items[i].Name == name {
				return list.Items[i].DeepCopy()
			}
		}
		panic(name)
	}
	changes := []struct {
		name   string
		route  string
		change func(*v1alpha1.TopicRoute, bool)
	}{
		{"drain", "owner-002", func(tr *v1alpha1.TopicRoute, on bool) {
			tr.Spec.Drain = nil
			if on {
				tr.Spec.Drain = &v1alpha1.Drain{BrokerNames: []string{"b"}}
			}
		}},
		{"topics", "owner-002", func(tr *v1alpha1.TopicRoute, on bool) {
			tr.Spec.Topics.Exact = []string{"app-002"}
			if on {
				tr.Spec.Topics.Exact = []string{"app-none"}
			}
		}},
		{"unrelated", "svc-05000", func(tr *v1alpha1.TopicRoute, on bool) {
			tr.Spec.Drain = nil
			if on {
				tr.Spec.Drain = &v1alpha1.Drain{BrokerNames: []string{"b"}}
			}
		}},
	}
	runs := 0
	for _, c := range changes {
		for _, how := range []string{"every", "concerned"} {
			b.Run(fmt.Sprintf("change=%s/%s", c.name, how), func(b *testing.B) {
				tr := find(c.route)
				runs++
				tr.UID = types.UID(fmt.Sprintf("%s-run-%d", tr.Name, runs))                        // versions of its own: none was applied before
				if _, err := applyTopicRoute(policies, table, tr, objectVersion(tr)); err != nil { // from its listed spec
					b.Fatal(err)
				}
				kick, sent := counted()
				q := newRefreshQueue()
				events := 0
				for i := 0; b.Loop(); i++ {
					c.change(tr, i%2 == 0)
					tr.Generation++
					others, err := applyTopicRoute(policies, table, tr, objectVersion(tr))
					if err != nil {
						b.Fatal(err)
					}
					if how == "every" {
						refreshEveryOther(list, keyOf(tr), kick)
					} else {
						q.add(others)
						events += len(others)
						q.take()
					}
				}
				events += sent()
				b.ReportMetric(float64(events)/float64(b.N), "events/op")
			})
		}
	}
	for _, how := range []string{"every", "concerned"} {
		b.Run("start/"+how, func(b *testing.B) {
			var events, distinct int
			for b.Loop() {
				table, _ := refreshScenario() // no policies yet
				fresh := NewPolicies(table)
				kick, sent := counted()
				q := newRefreshQueue()
				events = 0
				for i := range list.Items {
					tr := list.Items[i].DeepCopy()
					others, err := applyTopicRoute(fresh, table, tr, objectVersion(tr))
					if err != nil {
						b.Fatal(err)
					}
					if how == "every" {
						refreshEveryOther(list, keyOf(tr), kick)
					} else {
						q.add(others)
						events += len(others)
					}
				}
				events += sent()
				distinct = len(q.take())
				if how == "every" {
					distinct = len(list.Items)
				}
			}
			b.ReportMetric(float64(events), "events")
			b.ReportMetric(float64(distinct), "distinct")
		})
	}
}
