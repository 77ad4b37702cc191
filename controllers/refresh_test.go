package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/rocketpilot/rocketpilot/crds/v1alpha1"
	"github.com/rocketpilot/rocketpilot/routing"
)

// TestConflictFollowsAnOlderRouteAndSparesUnrelatedOnes: a TopicRoute created after another but preceding it (in
// the same second, with a lower name) takes two of its topics: the other one turns Conflicted, naming it, and back
// when it is deleted, each within seconds while the periodic resync is 30 s, because the leader reconciles again
// the TopicRoutes whose status the change changed. A TopicRoute that shares no topic with them is never
// reconciled again for their changes.
func TestConflictFollowsAnOlderRouteAndSparesUnrelatedOnes(t *testing.T) {
	apiServer(t)
	ns := demoNameServer(t)
	n := namespace(t)
	var mu sync.Mutex
	refreshed := map[string]int{}
	refreshes := func(name string) int {
		mu.Lock()
		defer mu.Unlock()
		return refreshed[n+"/"+name]
	}
	r := startReplica(t, "r1", restConfig, replicaOptions{refreshed: func(key string) {
		mu.Lock()
		refreshed[key]++
		mu.Unlock()
	}})
	readySource(t, n, ns)

	route := func(name string, sel v1alpha1.TopicSelector) *v1alpha1.TopicRoute {
		return &v1alpha1.TopicRoute{ObjectMeta: objectMeta(n, name), Spec: v1alpha1.TopicRouteSpec{Topics: sel}}
	}
	unrelated := route("unrelated", v1alpha1.TopicSelector{Exact: []string{"demo-audit-001"}})
	create(t, unrelated)
	waitStatus(t, unrelated, func(st *v1alpha1.TopicRouteStatus) (bool, string) {
		ok, why := conditionIs(st.Conditions, v1alpha1.ConditionConflicted, metav1.ConditionFalse)
		return ok && st.MatchedTopics == 1, fmt.Sprintf("%s; matched %d", why, st.MatchedTopics)
	})

	var young, old *v1alpha1.TopicRoute
	var created time.Time
	for attempt := 1; ; attempt++ {
		// Start early in a second, so that young is created, reconciled without a conflict, and old created
		// within it: creation times have seconds, and at the same second the lower name (old) precedes.
		time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second + 10*time.Millisecond)))
		young = route("b-young", v1alpha1.TopicSelector{Prefix: []string{"demo-orders-"}})
		create(t, young)
		waitStatus(t, young, func(st *v1alpha1.TopicRouteStatus) (bool, string) {
			ok, why := conditionIs(st.Conditions, v1alpha1.ConditionConflicted, metav1.ConditionFalse)
			return ok && st.MatchedTopics == 40, fmt.Sprintf("%s; matched %d", why, st.MatchedTopics)
		})
		old = route("a-old", v1alpha1.TopicSelector{Exact: []string{"demo-orders-001", "demo-orders-002"}})
		created = time.Now()
		create(t, old)
		if get(t, old).CreationTimestamp.Equal(&get(t, young).CreationTimestamp) {
			break
		}
		if attempt == 5 {
			t.Fatal("could not create two TopicRoutes within one second in 5 attempts")
		}
		t.Logf("attempt %d: created in two seconds; again", attempt)
		for _, o := range []*v1alpha1.TopicRoute{old, young} {
			if err := k8s.Delete(context.Background(), o); err != nil && !apierrors.IsNotFound(err) {
				t.Fatal(err)
			}
		}
		waitUntil(t, 10*time.Second, "both policies gone", func() (bool, string) {
			names := r.table.PolicyNames()
			return !slices.Contains(names, n+"/a-old") && !slices.Contains(names, n+"/b-young"), fmt.Sprint(names)
		})
	}

	waitUntil(t, 10*time.Second, "b-young Conflicted by a-old", func() (bool, string) {
		st := get(t, young).Status
		c := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionConflicted)
		return c != nil && c.Status == metav1.ConditionTrue &&
				strings.Contains(c.Message, "2 matched topics follow an older TopicRoute: "+n+"/a-old") && st.MatchedTopics == 38,
			fmt.Sprintf("%v; matched %d", c, st.MatchedTopics)
	})
	t.Logf("b-young's status followed a-old's creation in %v", time.Since(created).Round(10*time.Millisecond))
	if refreshes("b-young") == 0 {
		t.Fatal("b-young was not reconciled again for a-old's creation")
	}

	if err := k8s.Delete(context.Background(), old); err != nil {
		t.Fatal(err)
	}
	deleted := time.Now()
	waitUntil(t, 10*time.Second, "b-young without the conflict", func() (bool, string) {
		st := get(t, young).Status
		ok, why := conditionIs(st.Conditions, v1alpha1.ConditionConflicted, metav1.ConditionFalse)
		return ok && st.MatchedTopics == 40, fmt.Sprintf("%s; matched %d", why, st.MatchedTopics)
	})
	t.Logf("b-young's status followed a-old's deletion in %v", time.Since(deleted).Round(10*time.Millisecond))
	if got := refreshes("b-young"); got < 2 {
		t.Fatalf("b-young reconciled again %d times for a-old's creation and deletion, want 2", got)
	}
	if got := refreshes("unrelated"); got != 0 {
		t.Fatalf("the unrelated TopicRoute was reconciled again %d times for the others' changes", got)
	}
}

// SetRoute names the other TopicRoutes whose status the change changed, and only those.
func TestSetRouteNamesTheOtherRoutesItConcerns(t *testing.T) {
	table := routing.NewTable()
	r := &routing.Route{Members: []routing.Member{{Cluster: "c", BrokerName: "b", Perm: 6, ReadQueueNums: 4, WriteQueueNums: 4,
		Addrs: []routing.BrokerAddr{{Addr: "10.0.0.1:10911"}}}}}
	table.Apply("ns", routing.Update{Topic: "orders-1", Route: r}, routing.Update{Topic: "orders-2", Route: r},
		routing.Update{Topic: "audit", Route: r})
	p := NewPolicies(table)
	now := time.Now()
	policy := func(name string, age time.Duration, m routing.TopicMatch) *routing.Policy {
		return &routing.Policy{Name: name, Created: now.Add(-age), Match: m}
	}
	if got := p.SetRoute("n/audit", "1", policy("n/audit", time.Hour, routing.TopicMatch{Exact: []string{"audit"}})); len(got) != 0 {
		t.Fatalf("the first route names %v", got)
	}
	if got := p.SetRoute("n/young", "1", policy("n/young", 0, routing.TopicMatch{Prefix: []string{"orders-"}})); len(got) != 0 {
		t.Fatalf("a route overlapping none names %v", got)
	}
	older := policy("n/old", time.Hour, routing.TopicMatch{Exact: []string{"orders-1"}})
	if got := p.SetRoute("n/old", "1", older); !slices.Equal(got, []string{"n/young"}) {
		t.Fatalf("an older route taking a topic of young names %v, want young", got)
	}
	if got := p.SetRoute("n/old", "1", older); got != nil {
		t.Fatalf("the same version again names %v", got)
	}
	older.Drain = []string{"b"}
	if got := p.SetRoute("n/old", "2", older); len(got) != 0 {
		t.Fatalf("a new version matching the same topics names %v", got)
	}
	if got := p.SetRoute("n/old", "", nil); !slices.Equal(got, []string{"n/young"}) {
		t.Fatalf("the older route's deletion names %v, want young", got)
	}
}

// The refresh queue holds each TopicRoute once until taken, and signals once.
func TestRefreshQueueHoldsEachRouteOnce(t *testing.T) {
	q := newRefreshQueue()
	q.add(nil)
	if len(q.ready) != 0 {
		t.Fatal("nothing added, yet signalled")
	}
	q.add([]string{"n/b", "n/a"})
	q.add([]string{"n/b", "n/c"})
	if len(q.ready) != 1 {
		t.Fatalf("%d signals", len(q.ready))
	}
	if got := q.take(); !slices.Equal(got, []string{"n/a", "n/b", "n/c"}) {
		t.Fatalf("took %v", got)
	}
	if got := q.take(); len(got) != 0 {
		t.Fatalf("took %v again", got)
	}
}
