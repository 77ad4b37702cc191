package controllers

// Fault tests of the Kubernetes side: the API server restarted under running controllers, TopicRoutes that claim
// the same topic, resources the schema accepts but the controllers must refuse, and status writes that conflict.
// Each test watches what an xDS client is served through the whole fault, with a raw delta ADS client that
// records every response.

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	rmqv3 "github.com/envoyproxy/go-control-plane/contrib/envoy/extensions/filters/network/rocketmq_proxy/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/go-logr/logr"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/rocketpilot/rocketpilot/crds/v1alpha1"
	"github.com/rocketpilot/rocketpilot/internal/kubetest"
	"github.com/rocketpilot/rocketpilot/internal/testutil"
	nsclient "github.com/rocketpilot/rocketpilot/nameserver/client"
	"github.com/rocketpilot/rocketpilot/nameserver/embedded"
	"github.com/rocketpilot/rocketpilot/nameserver/watcher"
	"github.com/rocketpilot/rocketpilot/routing"
	"github.com/rocketpilot/rocketpilot/xds/cache"
	"github.com/rocketpilot/rocketpilot/xds/server"
	"github.com/rocketpilot/rocketpilot/xds/server/servertest"
	"github.com/rocketpilot/rocketpilot/xds/sidecar"
	"github.com/rocketpilot/rocketpilot/xds/translate"
)

// TestAPIServerRestartKeepsServingAndResumes stops the kube-apiserver (etcd keeps running) under two replicas that
// share a Lease, keeps it down past the Lease's renew deadline, and starts it again on the same address with the
// same certificates. Both replicas' xDS clients hold the same resources at the same versions throughout the
// outage, and a client that connects during it is served; the leader's manager stops ("leader election lost")
// and is replaced as serve replaces it, the follower's manager lives through the outage. After the restart a
// changed TopicRoute and a new TopicBinding reach both clients, and no response at any point removed a route, a
// cluster, endpoints or an ECDS topic.
func TestAPIServerRestartKeepsServingAndResumes(t *testing.T) {
	begin := time.Now()
	env := kubetest.StartRestartableT(t, filepath.Join("testdata", "crds"))
	c := kubetest.Client(t, env) // made before the restart, used after it
	ns := demoNameServer(t)
	n := "restart"
	if err := c.Create(context.Background(), &corev1.Namespace{ObjectMeta: objectMeta("", n)}); err != nil {
		t.Fatal(err)
	}
	lease := fmt.Sprintf("rocketpilot-test-%d", leaseIDs.Add(1))
	// Short Lease timings (those of the suite's replicas), so that a 4 s outage outlasts the renew deadline (1 s)
	// and the Lease (2 s).
	short := leaseTimings{duration: 2 * time.Second, renew: time.Second, retry: 100 * time.Millisecond}
	a := startReplica(t, "replica-a", env.Config, replicaOptions{lease: lease, timings: short, restart: true, resync: time.Second})
	waitUntil(t, 30*time.Second, "replica-a elected", func() (bool, string) { return a.leading(), "" })
	b := startReplica(t, "replica-b", env.Config, replicaOptions{lease: lease, timings: short, resync: time.Second})

	nss := &v1alpha1.NameServerSource{ObjectMeta: objectMeta(n, "demo"), Spec: v1alpha1.NameServerSourceSpec{Addresses: []string{ns.Addr()}}}
	createWith(t, c, nss)
	const topic = "demo-inventory-003" // broker-a (DefaultCluster) and broker-d (ClusterB)
	tr := weightedRoute(n, "inventory", 80, 20)
	createWith(t, c, tr)
	waitUntil(t, 30*time.Second, "NameServerSource Ready and TopicRoute Accepted", func() (bool, string) {
		if err := c.Get(context.Background(), client.ObjectKeyFromObject(nss), nss); err != nil {
			return false, err.Error()
		}
		if err := c.Get(context.Background(), client.ObjectKeyFromObject(tr), tr); err != nil {
			return false, err.Error()
		}
		ok1, why1 := conditionIs(nss.Status.Conditions, v1alpha1.ConditionReady, metav1.ConditionTrue)
		ok2, why2 := conditionIs(tr.Status.Conditions, v1alpha1.ConditionAccepted, metav1.ConditionTrue)
		return ok1 && ok2, why1 + "; " + why2
	})
	ra, rb := a.record(t, "orders-a", nil, topic), b.record(t, "orders-b", nil, topic)
	for _, r := range []*xdsRecorder{ra, rb} {
		r.waitSend(t, topic, "broker-a:80000 broker-d:20000")
		// The ECDS config waits for the clusters it may name (make-before-break), so it can come after the route
		// that shows the TopicRoute: the snapshot below must not be taken between the two.
		r.waitHolds(t, translate.ExtensionType, translate.ExtensionConfigName)
	}
	// What the clients hold now is what they must hold through the outage.
	heldA, heldB := ra.snapshot(), rb.snapshot()
	countA, countB := ra.count(), rb.count()

	t.Logf("set up in %v", time.Since(begin).Round(10*time.Millisecond))
	apiServer := env.ControlPlane.APIServer
	down := time.Now() // it stops listening at once; Stop returns once open watches have drained (1 s)
	if err := apiServer.Stop(); err != nil {
		t.Fatal(err)
	}
	const outage = 4 * time.Second
	// A client that connects during the outage is served the same route.
	probe, err := sidecar.Dial(a.addr, sidecar.Options{NodeID: "probe"})
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close()
	pctx, pcancel := context.WithTimeout(context.Background(), outage)
	route, err := probe.Route(pctx, topic)
	pcancel()
	probed := time.Since(down)
	if err != nil {
		t.Fatalf("a client connecting during the outage: %v", err)
	}
	if got := describeTargets(route.Send); got != "broker-a:80000 broker-d:20000" {
		t.Fatalf("a client connecting during the outage is sent to %s", got)
	}
	// Throughout the outage both clients hold what they held before, at the same versions.
	checks := 0
	for time.Since(down) < outage {
		for _, h := range []struct {
			r    *xdsRecorder
			held map[string]string
		}{{ra, heldA}, {rb, heldB}} {
			if diff := diffHeld(h.held, h.r.snapshot()); diff != "" {
				t.Fatalf("%s changed %v into the outage: %s", h.r.node, time.Since(down).Round(time.Millisecond), diff)
			}
			if err := h.r.ended(); err != nil {
				t.Fatalf("%s's stream ended during the outage: %v", h.r.node, err)
			}
		}
		checks++
		time.Sleep(100 * time.Millisecond)
	}
	duringA, duringB := ra.count()-countA, rb.count()-countB
	lostAt := a.stopped()

	if err := apiServer.Start(); err != nil {
		t.Fatal(err)
	}
	up := time.Now()
	t.Logf("API server down %v (stopped for %v, then %v to start again); %d checks of the clients' state during it; responses during it: %d and %d",
		up.Sub(down).Round(10*time.Millisecond), outage, up.Sub(down.Add(outage)).Round(10*time.Millisecond), checks, duringA, duringB)
	t.Logf("the probe connecting during the outage was served %v after the API server stopped", probed.Round(10*time.Millisecond))
	for _, s := range lostAt {
		t.Logf("replica-a's manager stopped %v after the API server: %v", s.at.Sub(down).Round(10*time.Millisecond), s.err)
	}
	if len(lostAt) == 0 {
		t.Log("replica-a's manager did not stop during the outage")
	}

	// Changes after the restart reach both replicas' clients: the controllers resumed.
	update(t, c, tr, func(tr *v1alpha1.TopicRoute) {
		tr.Spec.Send.Backends[0].Weight, tr.Spec.Send.Backends[1].Weight = ptr.To[int32](50), ptr.To[int32](50)
	})
	var resumed []string
	for _, r := range []*xdsRecorder{ra, rb} {
		r.waitSend(t, topic, "broker-a:50000 broker-d:50000")
		resumed = append(resumed, fmt.Sprintf("%s %v", r.node, time.Since(up).Round(10*time.Millisecond)))
	}
	tb := &v1alpha1.TopicBinding{ObjectMeta: objectMeta(n, "orders"),
		Spec: v1alpha1.TopicBindingSpec{NodeIDs: []string{"orders-*"}, Topics: []string{embedded.DemoTopic}}}
	createWith(t, c, tb)
	for _, r := range []*xdsRecorder{ra, rb} {
		r.waitECDS(t, embedded.DemoTopic)
	}
	// A leader writes status again: the TopicRoute's new generation is Accepted.
	waitUntil(t, 30*time.Second, "status of the TopicRoute's generation 2", func() (bool, string) {
		if err := c.Get(context.Background(), client.ObjectKeyFromObject(tr), tr); err != nil {
			return false, err.Error()
		}
		cond := meta.FindStatusCondition(tr.Status.Conditions, v1alpha1.ConditionAccepted)
		return cond != nil && cond.Status == metav1.ConditionTrue && cond.ObservedGeneration == 2, fmt.Sprint(cond)
	})
	leader := "neither"
	if a.leading() {
		leader = "replica-a"
	} else if b.leading() {
		leader = "replica-b"
	}
	t.Logf("the new weights reached the clients after the API server was back: %s; leader after the restart: %s; managers started: replica-a %d, replica-b %d",
		strings.Join(resumed, ", "), leader, a.managers(), b.managers())

	for _, s := range lostAt {
		if s.err == nil || !strings.Contains(s.err.Error(), "leader election lost") {
			t.Errorf("replica-a's manager stopped for another reason than the lost lease: %v", s.err)
		}
	}
	if s := b.stopped(); len(s) > 0 {
		t.Errorf("replica-b's manager (a follower) stopped: %v", s[0].err)
	}
	for _, r := range []*xdsRecorder{ra, rb} {
		r.assertNoLoss(t)
		if err := r.ended(); err != nil {
			t.Errorf("%s's stream ended: %v", r.node, err)
		}
		t.Logf("%s: %d responses recorded, none removed or emptied anything", r.node, r.count())
	}
}

// TestConflictingTopicRoutesOldestWins: of two TopicRoutes claiming TopicTest, the older one (whose name sorts
// last) is served; the younger reports Conflicted with the winner's name, and a Conflict event. Deleting the
// winner hands the topic over: the younger one's policy is served and its status says it has no conflict any
// more, well before a periodic resync (30 s) would refresh it.
func TestConflictingTopicRoutesOldestWins(t *testing.T) {
	p := sharedReplica(t)
	ns := demoNameServer(t)
	n := namespace(t)
	readySource(t, n, ns)
	rec := p.record(t, "conflicts", nil, embedded.DemoTopic)
	rec.waitSend(t, embedded.DemoTopic, "broker-a:0 broker-b:0")

	old := &v1alpha1.TopicRoute{ObjectMeta: objectMeta(n, "z-old"), Spec: v1alpha1.TopicRouteSpec{
		Topics: v1alpha1.TopicSelector{Exact: []string{embedded.DemoTopic}}, Drain: &v1alpha1.Drain{BrokerNames: []string{"broker-b"}}}}
	create(t, old)
	rec.waitSend(t, embedded.DemoTopic, "broker-a:0")
	oldServed := time.Now()
	waitStatus(t, old, func(st *v1alpha1.TopicRouteStatus) (bool, string) {
		ok, why := conditionIs(st.Conditions, v1alpha1.ConditionConflicted, metav1.ConditionFalse)
		return ok && st.MatchedTopics == 1, why
	})
	// Creation timestamps have seconds: the younger one is created in a later second.
	waitUntil(t, 5*time.Second, "a later second", func() (bool, string) {
		return time.Now().Truncate(time.Second).After(get(t, old).CreationTimestamp.Time), ""
	})
	young := &v1alpha1.TopicRoute{ObjectMeta: objectMeta(n, "a-young"), Spec: v1alpha1.TopicRouteSpec{
		Topics: v1alpha1.TopicSelector{Prefix: []string{"Topic"}}, Drain: &v1alpha1.Drain{BrokerNames: []string{"broker-a"}}}}
	create(t, young)
	winner := n + "/z-old"
	waitStatus(t, young, func(st *v1alpha1.TopicRouteStatus) (bool, string) {
		c := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionConflicted)
		ok, why := conditionIs(st.Conditions, v1alpha1.ConditionAccepted, metav1.ConditionTrue)
		return ok && c != nil && c.Status == metav1.ConditionTrue && c.Reason == v1alpha1.ReasonOverridden &&
				strings.Contains(c.Message, "1 matched topics follow an older TopicRoute: "+winner) && st.MatchedTopics == 0,
			fmt.Sprintf("%s; %v; matched %d", why, c, st.MatchedTopics)
	})
	if got, overridden := p.table.TopicPolicy(embedded.DemoTopic); got != winner || !slices.Equal(overridden, []string{n + "/a-young"}) {
		t.Fatalf("TopicTest follows %q (overriding %v), want %s", got, overridden, winner)
	}
	waitUntil(t, 30*time.Second, "a Conflict event naming the winner", func() (bool, string) {
		var events eventsv1.EventList
		if err := k8s.List(context.Background(), &events, client.InNamespace(n)); err != nil {
			return false, err.Error()
		}
		for _, e := range events.Items {
			if e.Regarding.Name == "a-young" && e.Reason == "Conflict" && e.Type == corev1.EventTypeWarning && strings.Contains(e.Note, winner) {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d events", len(events.Items))
	})
	if got := get(t, old); !meta.IsStatusConditionFalse(got.Status.Conditions, v1alpha1.ConditionConflicted) || got.Status.MatchedTopics != 1 {
		t.Fatalf("the winner's status: %+v", got.Status)
	}
	handover := time.Now()
	rec.checkSendSince(t, embedded.DemoTopic, oldServed, handover, "broker-a:0")

	if err := k8s.Delete(context.Background(), old); err != nil {
		t.Fatal(err)
	}
	rec.waitSend(t, embedded.DemoTopic, "broker-b:0")
	waitUntil(t, 10*time.Second, "the new winner's status without the conflict", func() (bool, string) {
		st := get(t, young).Status
		ok, why := conditionIs(st.Conditions, v1alpha1.ConditionConflicted, metav1.ConditionFalse)
		return ok && st.MatchedTopics == 1, fmt.Sprintf("%s; matched %d", why, st.MatchedTopics)
	})
	t.Logf("the new winner's status followed %v after the winner's deletion", time.Since(handover).Round(10*time.Millisecond))
	rec.checkSendSince(t, embedded.DemoTopic, handover, time.Now(), "broker-a:0", "broker-b:0")
	rec.assertNoLoss(t)
}

// TestInvalidUpdatesKeepTheLastGoodState: what the schema lets through but the controllers cannot apply — a regex
// that does not compile in an update, a pod selector with an unknown operator, a backend naming no known broker
// cluster, a NameServer port out of range — gets a status condition with the reason, and the served state
// keeps the last good route. After each, a valid change is the next thing the client sees.
func TestInvalidUpdatesKeepTheLastGoodState(t *testing.T) {
	p := sharedReplica(t)
	ns := demoNameServer(t)
	n := namespace(t)
	nss := readySource(t, n, ns)
	const inventory, orders = "demo-inventory-003", "demo-orders-005"
	labels, _ := structpb.NewStruct(map[string]any{"app": "orders"})
	md := &structpb.Struct{Fields: map[string]*structpb.Value{
		cache.MetadataNamespaceKey: structpb.NewStringValue(n), cache.MetadataLabelsKey: structpb.NewStructValue(labels)}}
	rec := p.record(t, "orders-1", md, inventory, orders, embedded.DemoTopic)
	// What the subtests create is deleted when the whole test ends, after the check that the client lost nothing.
	parent := t

	t.Run("regex that does not compile", func(t *testing.T) {
		tr := weightedRoute(n, "inventory", 80, 20)
		tr.Spec.Topics = v1alpha1.TopicSelector{Regex: "demo-inventory-00[0-9]"}
		create(parent, tr)
		rec.waitSend(t, inventory, "broker-a:80000 broker-d:20000")
		invalid := time.Now()
		update(t, k8s, tr, func(tr *v1alpha1.TopicRoute) {
			tr.Spec.Topics.Regex = "demo-inventory-(0"
			tr.Spec.Send.Backends[0].Weight = ptr.To[int32](10)
		})
		waitStatus(t, tr, func(st *v1alpha1.TopicRouteStatus) (bool, string) {
			c := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionAccepted)
			return c != nil && c.Status == metav1.ConditionFalse && c.Reason == v1alpha1.ReasonInvalid && c.ObservedGeneration == 2 &&
				strings.Contains(c.Message, "spec.topics.regex: error parsing regexp") && st.MatchedTopics == 9, fmt.Sprint(c, st.MatchedTopics)
		})
		if got, _ := p.table.TopicPolicy(inventory); got != n+"/inventory" {
			t.Fatalf("%s follows %q after the invalid update", inventory, got)
		}
		update(t, k8s, tr, func(tr *v1alpha1.TopicRoute) {
			tr.Spec.Topics.Regex = "demo-inventory-00[0-9]"
			tr.Spec.Send.Backends[0].Weight = ptr.To[int32](50)
			tr.Spec.Send.Backends[1].Weight = ptr.To[int32](50)
		})
		rec.waitSend(t, inventory, "broker-a:50000 broker-d:50000")
		rec.checkSendSince(t, inventory, invalid, time.Now(), "broker-a:80000 broker-d:20000", "broker-a:50000 broker-d:50000")
		waitStatus(t, tr, func(st *v1alpha1.TopicRouteStatus) (bool, string) {
			return conditionIs(st.Conditions, v1alpha1.ConditionAccepted, metav1.ConditionTrue)
		})
	})

	// The schema refuses unknown operators; a label key's syntax only the label parser checks.
	t.Run("pod selector with an invalid label key", func(t *testing.T) {
		tb := &v1alpha1.TopicBinding{ObjectMeta: objectMeta(n, "orders"), Spec: v1alpha1.TopicBindingSpec{
			PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "orders"}}, Topics: []string{embedded.DemoTopic}}}
		create(parent, tb)
		rec.waitECDS(t, embedded.DemoTopic)
		invalid := time.Now()
		update(t, k8s, tb, func(tb *v1alpha1.TopicBinding) {
			tb.Spec.PodSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "bad key!", Operator: "In", Values: []string{"orders"}}}}
			tb.Spec.Topics = append(tb.Spec.Topics, "demo-orders-001")
		})
		waitUntil(t, 30*time.Second, "Accepted=False", func() (bool, string) {
			c := meta.FindStatusCondition(get(t, tb).Status.Conditions, v1alpha1.ConditionAccepted)
			return c != nil && c.Status == metav1.ConditionFalse && c.Reason == v1alpha1.ReasonInvalid && c.ObservedGeneration == 2 &&
				strings.Contains(c.Message, "spec.podSelector: ") && strings.Contains(c.Message, "bad key!"), fmt.Sprint(c)
		})
		update(t, k8s, tb, func(tb *v1alpha1.TopicBinding) {
			tb.Spec.PodSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "orders"}}
			tb.Spec.Topics = []string{embedded.DemoTopic, "demo-orders-002"}
		})
		rec.waitECDS(t, embedded.DemoTopic, "demo-orders-002")
		if got := rec.ecdsSince(invalid); !slices.Equal(got, []string{embedded.DemoTopic + " demo-orders-002"}) {
			t.Fatalf("ECDS route tables since the invalid update: %q, want only the fixed one", got)
		}
	})

	t.Run("backend naming an unknown broker cluster", func(t *testing.T) {
		rec.waitSend(t, orders, "broker-a:0 broker-b:0")
		typo := time.Now()
		tr := &v1alpha1.TopicRoute{ObjectMeta: objectMeta(n, "orders"), Spec: v1alpha1.TopicRouteSpec{
			Topics: v1alpha1.TopicSelector{Exact: []string{orders}},
			Send:   &v1alpha1.SendRule{Backends: []v1alpha1.Backend{{BrokerCluster: "DefaultClustr"}}}}}
		create(parent, tr)
		waitStatus(t, tr, func(st *v1alpha1.TopicRouteStatus) (bool, string) {
			c := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionResolved)
			ok, why := conditionIs(st.Conditions, v1alpha1.ConditionAccepted, metav1.ConditionTrue)
			return ok && c != nil && c.Status == metav1.ConditionFalse && c.Reason == v1alpha1.ReasonBackendNotFound &&
				strings.HasSuffix(c.Message, ": brokerCluster DefaultClustr"), fmt.Sprint(why, c)
		})
		// The rule names none of the topic's groups: it is not applied (no blackhole); the fix is.
		update(t, k8s, tr, func(tr *v1alpha1.TopicRoute) {
			tr.Spec.Send.Backends = []v1alpha1.Backend{{BrokerNames: []string{"broker-b"}}}
		})
		rec.waitSend(t, orders, "broker-b:0")
		rec.checkSendSince(t, orders, typo, time.Now(), "broker-a:0 broker-b:0", "broker-b:0")
		waitStatus(t, tr, func(st *v1alpha1.TopicRouteStatus) (bool, string) {
			return conditionIs(st.Conditions, v1alpha1.ConditionResolved, metav1.ConditionTrue)
		})
	})

	t.Run("NameServer port out of range", func(t *testing.T) {
		held := rec.snapshot()
		update(t, k8s, nss, func(nss *v1alpha1.NameServerSource) { nss.Spec.Addresses = []string{"127.0.0.1:98760"} })
		waitUntil(t, 30*time.Second, "Degraded=True Invalid", func() (bool, string) {
			c := meta.FindStatusCondition(get(t, nss).Status.Conditions, v1alpha1.ConditionDegraded)
			return c != nil && c.Status == metav1.ConditionTrue && c.Reason == v1alpha1.ReasonInvalid && c.ObservedGeneration == 2 &&
				strings.Contains(c.Message, "127.0.0.1:98760"), fmt.Sprint(c)
		})
		if got := p.table.Topic(embedded.DemoTopic); got == nil {
			t.Fatal("the refused address withdrew the source's routes")
		}
		// Back to the NameServer: Ready and healthy again, and the clients never lost a route.
		update(t, k8s, nss, func(nss *v1alpha1.NameServerSource) { nss.Spec.Addresses = []string{ns.Addr()} })
		waitUntil(t, 30*time.Second, "Ready and not Degraded", func() (bool, string) {
			st := get(t, nss).Status
			c := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionDegraded)
			ok, why := conditionIs(st.Conditions, v1alpha1.ConditionReady, metav1.ConditionTrue)
			return ok && c != nil && c.Status == metav1.ConditionFalse && c.ObservedGeneration == 3, why + fmt.Sprint(c)
		})
		if diff := diffHeld(held, rec.snapshot()); diff != "" {
			t.Fatalf("the client's resources changed: %s", diff)
		}
		// Created with it, there is no watcher to keep: not Ready, for that reason.
		typo := &v1alpha1.NameServerSource{ObjectMeta: objectMeta(n, "typo"), Spec: v1alpha1.NameServerSourceSpec{Addresses: []string{"127.0.0.1:98760"}}}
		create(parent, typo)
		waitUntil(t, 30*time.Second, "Ready=False Invalid", func() (bool, string) {
			c := meta.FindStatusCondition(get(t, typo).Status.Conditions, v1alpha1.ConditionReady)
			return c != nil && c.Status == metav1.ConditionFalse && c.Reason == v1alpha1.ReasonInvalid &&
				strings.Contains(c.Message, "port 98760 is not in 1-65535"), fmt.Sprint(c)
		})
	})
	rec.assertNoLoss(t)
}

// TestNameServerSourceMoveKeepsRoutes: a NameServerSource whose NameServer moves to another address (a
// NameService's pod restarted with a new IP, a migration) keeps serving the routes it had until the NameServer
// at the new address has answered: no client ever sees its routes removed.
func TestNameServerSourceMoveKeepsRoutes(t *testing.T) {
	p := sharedReplica(t)
	ns := demoNameServer(t)
	n := namespace(t)
	nss := readySource(t, n, ns)
	rec := p.record(t, "orders-1", nil, embedded.DemoTopic, "demo-orders-001")
	rec.waitSend(t, embedded.DemoTopic, "broker-a:0 broker-b:0")
	rec.waitHolds(t, translate.ExtensionType, translate.ExtensionConfigName) // it can follow the route (make-before-break)
	held := rec.snapshot()
	moved := demoNameServer(t) // the same brokers and topics at another address
	update(t, k8s, nss, func(nss *v1alpha1.NameServerSource) { nss.Spec.Addresses = []string{moved.Addr()} })
	waitUntil(t, 30*time.Second, "Ready at the new address", func() (bool, string) {
		st := get(t, nss).Status
		ok, why := conditionIs(st.Conditions, v1alpha1.ConditionReady, metav1.ConditionTrue)
		return ok && len(st.NameServers) == 1 && st.NameServers[0].Address == moved.Addr() && st.NameServers[0].Reachable, why
	})
	waitUntil(t, 10*time.Second, "only the new NameServer's table source", func() (bool, string) {
		var srcs []string
		for _, s := range p.table.TopicSources(embedded.DemoTopic) {
			srcs = append(srcs, s.Source)
		}
		return slices.Equal(srcs, []string{"nss:" + n + "/demo@" + moved.Addr()}), fmt.Sprint(srcs)
	})
	if diff := diffHeld(held, rec.snapshot()); diff != "" {
		t.Fatalf("the client's resources changed: %s", diff)
	}
	rec.assertNoLoss(t)
}

// TestSourceMovedToAnUnreachableAddressKeepsRoutesUntilRemoved: Sources without an API server. A spec whose
// NameServer does not answer keeps the routes of the NameServer it replaced (its watcher never syncs); a spec
// with a port out of range is refused and the running watcher kept; deleting the source withdraws the routes of
// both the NameServer it lists and the one it replaced.
func TestSourceMovedToAnUnreachableAddressKeepsRoutesUntilRemoved(t *testing.T) {
	ns := demoNameServer(t)
	table := routing.NewTable()
	sources := NewSources(table, watcher.Options{BrokerInterval: 50 * time.Millisecond, RateLimit: 1e6, RemoveAfter: time.Hour,
		Client: nsclient.Options{RequestTimeout: time.Second, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}}, nil)
	defer sources.Close()
	spec := SourceSpec{Addrs: []string{ns.Addr()}, Interval: time.Hour, Mode: watcher.ModeAllTopics}
	if err := sources.Set("ns/demo", spec); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := sources.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	gone := demoNameServer(t)
	addr := gone.Addr()
	gone.Close() // nothing listens there any more
	if err := sources.Set("ns/demo", SourceSpec{Addrs: []string{addr}, Interval: time.Hour, Mode: watcher.ModeAllTopics}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 20*time.Second, "the new NameServer found unreachable", func() (bool, string) {
		st, _ := sources.Status("ns/demo")
		return len(st.NameServers) == 1 && st.NameServers[0].LastError != "", fmt.Sprint(st.NameServers)
	})
	if n, _ := table.Stats(); n != ns.TopicCount() {
		t.Fatalf("%d topics served after the move to an unreachable NameServer, want the last good %d", n, ns.TopicCount())
	}
	if err := sources.Set("ns/demo", SourceSpec{Addrs: []string{"127.0.0.1:0"}, Mode: watcher.ModeAllTopics}); err == nil ||
		!strings.Contains(err.Error(), "port 0 is not in 1-65535") {
		t.Fatalf("port 0: %v", err)
	}
	if st, _ := sources.Status("ns/demo"); len(st.NameServers) != 1 || st.NameServers[0].Addr != addr {
		t.Fatalf("the refused spec replaced the running watcher: %+v", st.NameServers)
	}
	sources.Remove("ns/demo")
	if n, _ := table.Stats(); n != 0 {
		t.Fatalf("%d topics after the source was removed", n)
	}
}

// TestConflictingStatusWritesAreRetried: while the test overwrites a TopicRoute's and a NameServerSource's status
// concurrently with the leader, the leader's writes fail with resourceVersion conflicts; they are retried, every
// reconcile error was such a conflict (and counted), and once the test stops both statuses are correct again —
// from the retries and events, not from the periodic resync (30 s).
func TestConflictingStatusWritesAreRetried(t *testing.T) {
	p := sharedReplica(t)
	ns := demoNameServer(t)
	n := namespace(t)
	nss := readySource(t, n, ns)
	tr := weightedRoute(n, "inventory", 80, 20)
	create(t, tr)
	routeOK := func(st *v1alpha1.TopicRouteStatus) (bool, string) {
		for _, c := range []struct {
			kind   string
			status metav1.ConditionStatus
		}{{v1alpha1.ConditionAccepted, metav1.ConditionTrue}, {v1alpha1.ConditionResolved, metav1.ConditionTrue}, {v1alpha1.ConditionConflicted, metav1.ConditionFalse}} {
			if ok, why := conditionIs(st.Conditions, c.kind, c.status); !ok {
				return false, why
			}
		}
		return st.MatchedTopics == 9 && st.ObservedGeneration == 1, fmt.Sprintf("matched %d, generation %d", st.MatchedTopics, st.ObservedGeneration)
	}
	sourceOK := func(st *v1alpha1.NameServerSourceStatus) (bool, string) {
		ok, why := conditionIs(st.Conditions, v1alpha1.ConditionReady, metav1.ConditionTrue)
		return ok && st.Topics == int32(ns.TopicCount()) && st.Brokers == 4, fmt.Sprintf("%s; %d topics, %d brokers", why, st.Topics, st.Brokers)
	}
	waitStatus(t, tr, routeOK)

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var wg sync.WaitGroup
	var mu sync.Mutex
	writes, conflicts := 0, 0
	tamper := func(obj client.Object, spoil func()) {
		for ctx.Err() == nil {
			if err := k8s.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
				continue
			}
			spoil()
			err := k8s.Status().Update(ctx, obj)
			mu.Lock()
			if err == nil {
				writes++
			} else if apierrors.IsConflict(err) {
				conflicts++
			}
			mu.Unlock()
		}
	}
	// Meanwhile another writer moves the objects' resourceVersion as fast as it can (a merge patch of an
	// annotation, which never conflicts), so that a status write computed from the leader's cache is likely stale.
	bump := func(obj client.Object) {
		for i := 0; ctx.Err() == nil; i++ {
			patch := fmt.Sprintf(`{"metadata":{"annotations":{"test.rocketpilot.io/bump":"%d"}}}`, i)
			k8s.Patch(ctx, obj, client.RawPatch(types.MergePatchType, []byte(patch)))
		}
	}
	spoiled := metav1.Condition{Type: v1alpha1.ConditionAccepted, Status: metav1.ConditionFalse, Reason: "Tampered", Message: "written by the test"}
	wg.Go(func() {
		o := &v1alpha1.TopicRoute{ObjectMeta: objectMeta(n, tr.Name)}
		tamper(o, func() { o.Status.MatchedTopics = 777; meta.SetStatusCondition(&o.Status.Conditions, spoiled) })
	})
	wg.Go(func() { bump(&v1alpha1.TopicRoute{ObjectMeta: objectMeta(n, tr.Name)}) })
	wg.Go(func() {
		o := &v1alpha1.NameServerSource{ObjectMeta: objectMeta(n, nss.Name)}
		s := spoiled
		s.Type = v1alpha1.ConditionReady
		tamper(o, func() { o.Status.Topics = 1; meta.SetStatusCondition(&o.Status.Conditions, s) })
	})
	wg.Go(func() { bump(&v1alpha1.NameServerSource{ObjectMeta: objectMeta(n, nss.Name)}) })
	waitUntil(t, 20*time.Second, "conflicting status writes of both reconcilers", func() (bool, string) {
		r, s := p.errs.count("topicroute", apierrors.IsConflict), p.errs.count("nameserversource", apierrors.IsConflict)
		mu.Lock()
		defer mu.Unlock()
		return r >= 3 && s >= 3 && writes >= 6, fmt.Sprintf("topicroute %d, nameserversource %d; the test wrote %d times, %d conflicts", r, s, writes, conflicts)
	})
	stop()
	wg.Wait()
	stopped := time.Now()
	waitStatus(t, tr, routeOK)
	waitUntil(t, 20*time.Second, "the NameServerSource's status", func() (bool, string) { return sourceOK(&get(t, nss).Status) })
	t.Logf("the test wrote status %d times (%d conflicts); correct again %v after it stopped", writes, conflicts,
		time.Since(stopped).Round(10*time.Millisecond))
	for _, kind := range []string{"topicroute", "nameserversource"} {
		all, conflicted := p.errs.count(kind, nil), p.errs.count(kind, apierrors.IsConflict)
		if all != conflicted {
			t.Errorf("%s: %d reconcile errors, %d of them conflicts: %v", kind, all, conflicted, p.errs.others(kind, apierrors.IsConflict))
		}
		if got := p.counter(kind); got != float64(all) {
			t.Errorf("%s: the error metric says %v, %d errors were logged", kind, got, all)
		}
		t.Logf("%s: %d status writes failed with a conflict and were retried", kind, conflicted)
	}
	// And they stay correct: nothing writes them back to what the test wrote.
	if ok, why := routeOK(&get(t, tr).Status); !ok {
		t.Fatal(why)
	}
}

// weightedRoute is a TopicRoute over demo-inventory-001..009 sending to DefaultCluster and ClusterB by weight.
func weightedRoute(namespace, name string, a, b int32) *v1alpha1.TopicRoute {
	return &v1alpha1.TopicRoute{ObjectMeta: objectMeta(namespace, name), Spec: v1alpha1.TopicRouteSpec{
		Topics: v1alpha1.TopicSelector{Prefix: []string{"demo-inventory-00"}},
		Send: &v1alpha1.SendRule{Backends: []v1alpha1.Backend{
			{BrokerCluster: embedded.DemoCluster, Weight: ptr.To(a)},
			{BrokerCluster: embedded.DemoClusterB, Weight: ptr.To(b)},
		}},
	}}
}

// createWith is create for the client of another API server.
func createWith(t *testing.T, c client.Client, obj client.Object) {
	t.Helper()
	if err := c.Create(context.Background(), obj); err != nil {
		t.Fatalf("create %s: %v", obj.GetName(), err)
	}
	t.Cleanup(func() {
		if err := c.Delete(context.Background(), obj); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete %s: %v", obj.GetName(), err)
		}
	})
}

// update reads obj, changes it and writes it, again on conflicts.
func update[T client.Object](t *testing.T, c client.Client, obj T, change func(T)) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := c.Get(context.Background(), client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		change(obj)
		return c.Update(context.Background(), obj)
	})
	if err != nil {
		t.Fatalf("update %s: %v", obj.GetName(), err)
	}
}

func waitStatus(t *testing.T, tr *v1alpha1.TopicRoute, cond func(*v1alpha1.TopicRouteStatus) (bool, string)) {
	t.Helper()
	waitUntil(t, 30*time.Second, "status of TopicRoute "+tr.Name, func() (bool, string) { return cond(&get(t, tr).Status) })
}

// waitUntil polls cond until it holds, failing the test after timeout with what it last reported.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	testutil.Eventually(t, timeout, what, cond)
}

// A replica is one rocketpilot control plane against an API server, like the suite's plane, with what the fault
// tests look at: its reconcile errors as controller-runtime logs them, its error metric, its managers' stops,
// and (with restart) a manager that stops replaced by a new one as serve does it.
type replica struct {
	id       string
	table    *routing.Table
	sources  *Sources
	policies *Policies
	metrics  *Metrics
	xds      *cache.Cache
	addr     string
	errs     *reconcileErrors

	mu      sync.Mutex
	current ctrl.Manager
	started int
	stops   []managerStop
}

type replicaOptions struct {
	lease   string        // the Lease the replica competes for; "" for one of its own
	timings leaseTimings  // serve's defaults (15s, 10s, 2s) when zero
	resync  time.Duration // Options.Resync; serve's default (30s) when 0
	// restart replaces a manager that stops, as serve does (cmd/rocketpilot, startManager): after 1 s, doubling,
	// and once the new manager's caches have synced, what the API server no longer lists is pruned.
	restart bool
	// refreshed is Options.refreshed: told each TopicRoute reconciled again because another one's change changed
	// its status.
	refreshed func(key string)
}

type leaseTimings struct{ duration, renew, retry time.Duration }

type managerStop struct {
	at  time.Time
	err error
}

// sharedReplica is a replica on the suite's API server, with serve's Lease timings and resync.
func sharedReplica(t *testing.T) *replica {
	t.Helper()
	apiServer(t)
	return startReplica(t, "r1", restConfig, replicaOptions{})
}

func startReplica(t *testing.T, id string, cfg *rest.Config, o replicaOptions) *replica {
	t.Helper()
	if o.lease == "" {
		o.lease = fmt.Sprintf("rocketpilot-test-%d", leaseIDs.Add(1))
	}
	if o.timings.duration == 0 {
		o.timings = leaseTimings{duration: 15 * time.Second, renew: 10 * time.Second, retry: 2 * time.Second}
	}
	table := routing.NewTable()
	r := &replica{id: id, table: table, policies: NewPolicies(table), metrics: NewMetrics(), errs: &reconcileErrors{},
		sources: NewSources(table, watcher.Options{
			BrokerInterval: 100 * time.Millisecond, RateLimit: 1e6, Concurrency: 32, RemoveAfter: time.Nanosecond,
			Client: nsclient.Options{RequestTimeout: 2 * time.Second, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond},
		}, nil)}
	newManager := func() (ctrl.Manager, error) {
		mgr, err := ctrl.NewManager(cfg, ctrl.Options{
			Scheme:                        scheme,
			Logger:                        logr.New(&errorSink{rec: r.errs}),
			Metrics:                       metricsserver.Options{BindAddress: "0"},
			HealthProbeBindAddress:        "0",
			LeaderElection:                true,
			LeaderElectionID:              o.lease,
			LeaderElectionNamespace:       "default",
			LeaderElectionReleaseOnCancel: true,
			LeaseDuration:                 &o.timings.duration,
			RenewDeadline:                 &o.timings.renew,
			RetryPeriod:                   &o.timings.retry,
			Client:                        client.Options{FieldOwner: id},
			Controller:                    config.Controller{SkipNameValidation: ptr.To(true)},
		})
		if err != nil {
			return nil, err
		}
		return mgr, Setup(mgr, Options{Table: table, Sources: r.sources, Policies: r.policies, Resync: o.resync, Metrics: r.metrics,
			refreshed: o.refreshed})
	}
	first, err := newManager()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { r.runManagers(ctx, &wg, first, newManager, o.restart) })
	xds := servertest.Start(t, server.StackConfig{Table: table})
	r.xds, r.addr = xds.Cache(), xds.Addr()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		xds.Stop()
		r.sources.Close()
		if !o.restart {
			if s := r.stopped(); len(s) > 0 {
				t.Errorf("%s: the manager stopped: %v", id, s[0].err)
			}
		}
		// The manager created the Lease; the test deletes it.
		if c, err := client.New(cfg, client.Options{Scheme: scheme}); err == nil {
			l := &coordinationv1.Lease{ObjectMeta: objectMeta("default", o.lease)}
			if err := c.Delete(context.Background(), l); err != nil && !apierrors.IsNotFound(err) {
				t.Logf("delete lease %s: %v", o.lease, err)
			}
		}
	})
	return r
}

// runManagers runs the replica's managers until ctx ends: the first, and with restart each replacement.
func (r *replica) runManagers(ctx context.Context, wg *sync.WaitGroup, m ctrl.Manager, next func() (ctrl.Manager, error), restart bool) {
	backoff := time.Second
	for {
		r.mu.Lock()
		r.current = m
		r.started++
		replacement := r.started > 1
		r.mu.Unlock()
		if replacement {
			wg.Go(func() {
				if m.GetCache().WaitForCacheSync(ctx) {
					Prune(ctx, m.GetAPIReader(), r.sources, r.policies, "")
				}
			})
		}
		err := m.Start(ctx)
		if ctx.Err() != nil {
			return
		}
		r.mu.Lock()
		r.stops = append(r.stops, managerStop{at: time.Now(), err: err})
		r.current = nil
		r.mu.Unlock()
		if !restart {
			return
		}
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 30*time.Second)
			var err error
			if m, err = next(); err == nil {
				break
			}
		}
	}
}

func (r *replica) leading() bool {
	r.mu.Lock()
	m := r.current
	r.mu.Unlock()
	if m == nil {
		return false
	}
	select {
	case <-m.Elected():
		return true
	default:
		return false
	}
}

func (r *replica) stopped() []managerStop {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.stops)
}

func (r *replica) managers() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.started
}

// counter reads the replica's reconcile error metric of a kind.
func (r *replica) counter(kind string) float64 {
	var m dto.Metric
	if err := r.metrics.errors.WithLabelValues(kind).Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

// record connects an xDS recorder to the replica once its cache holds the model's current version, so that the
// topics' first answers are routes.
func (r *replica) record(t *testing.T, node string, md *structpb.Struct, topics ...string) *xdsRecorder {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.xds.WaitVersion(ctx, r.table.Version()); err != nil {
		t.Fatal(err)
	}
	return recordXDS(t, r.addr, node, md, topics...)
}

// reconcileErrors keeps the errors controller-runtime logs for failed reconciles ("Reconciler error"), by
// controller.
type reconcileErrors struct {
	mu   sync.Mutex
	errs map[string][]error
}

// count returns how many errors of a controller match (all with a nil match).
func (e *reconcileErrors) count(controller string, match func(error) bool) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, err := range e.errs[controller] {
		if match == nil || match(err) {
			n++
		}
	}
	return n
}

func (e *reconcileErrors) others(controller string, match func(error) bool) []error {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []error
	for _, err := range e.errs[controller] {
		if !match(err) {
			out = append(out, err)
		}
	}
	return out
}

type errorSink struct {
	rec        *reconcileErrors
	controller string
}

func (s *errorSink) Init(logr.RuntimeInfo)    {}
func (s *errorSink) Enabled(int) bool         { return false }
func (s *errorSink) Info(int, string, ...any) {}
func (s *errorSink) WithName(string) logr.LogSink {
	return s
}

func (s *errorSink) WithValues(kv ...any) logr.LogSink {
	out := *s
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i] == "controller" {
			out.controller = fmt.Sprint(kv[i+1])
		}
	}
	return &out
}

func (s *errorSink) Error(err error, msg string, _ ...any) {
	if msg != "Reconciler error" {
		return
	}
	s.rec.mu.Lock()
	defer s.rec.mu.Unlock()
	if s.rec.errs == nil {
		s.rec.errs = map[string][]error{}
	}
	s.rec.errs[s.controller] = append(s.rec.errs[s.controller], err)
}

// xdsRecorder is a raw delta ADS client shaped like an Envoy with on-demand routes: it subscribes to topics'
// routes by name, to every cluster and endpoint assignment of its view and to its ECDS config. It ACKs and
// records every response, holds the resources, and notes each response that took away something a client
// needs: a route (or a route without routes), a cluster, endpoints (or an assignment without any), an ECDS
// topic. Clusters are retained for 10 minutes after no route names them, so none may be removed in a test.
type xdsRecorder struct {
	node   string
	topics []string

	mu      sync.Mutex
	n       int
	held    map[string]map[string]heldResource // type URL → name → what the client holds
	ecds    []string                           // the topics of the ECDS route table
	ecdsLog []timed                            // each ECDS route table, its topics joined by spaces
	sends   map[string][]timed                 // topic → where its sends go, at each change
	loss    []string
	err     error
}

type heldResource struct {
	version string
	msg     proto.Message
}

type timed struct {
	at    time.Time
	value string
}

func recordXDS(t *testing.T, addr, node string, md *structpb.Struct, topics ...string) *xdsRecorder {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	st, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r := &xdsRecorder{node: node, topics: topics, held: map[string]map[string]heldResource{}, sends: map[string][]timed{}}
	for i, req := range []*discovery.DeltaDiscoveryRequest{
		{TypeUrl: translate.RouteType, ResourceNamesSubscribe: topics},
		{TypeUrl: translate.ClusterType, ResourceNamesSubscribe: []string{"*"}},
		{TypeUrl: translate.EndpointType, ResourceNamesSubscribe: []string{"*"}},
		{TypeUrl: translate.ExtensionType, ResourceNamesSubscribe: []string{translate.ExtensionConfigName}},
	} {
		if i == 0 {
			req.Node = &corev3.Node{Id: node, Metadata: md}
		}
		if err := st.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			resp, err := st.Recv()
			if err == nil {
				err = r.apply(resp)
			}
			if err == nil {
				err = st.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: resp.TypeUrl, ResponseNonce: resp.Nonce})
			}
			if err != nil {
				r.mu.Lock()
				r.err = err
				r.mu.Unlock()
				return
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		conn.Close()
	})
	return r
}

func (r *xdsRecorder) apply(resp *discovery.DeltaDiscoveryResponse) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n++
	typ := resp.GetTypeUrl()
	held := r.held[typ]
	if held == nil {
		held = map[string]heldResource{}
		r.held[typ] = held
	}
	for _, res := range resp.GetResources() {
		var msg proto.Message
		switch typ {
		case translate.RouteType:
			msg = &rmqv3.RouteConfiguration{}
		case translate.ClusterType:
			msg = &clusterv3.Cluster{}
		case translate.EndpointType:
			msg = &endpointv3.ClusterLoadAssignment{}
		case translate.ExtensionType:
			msg = &corev3.TypedExtensionConfig{}
		default:
			return fmt.Errorf("response of type %s", typ)
		}
		if err := res.GetResource().UnmarshalTo(msg); err != nil {
			return fmt.Errorf("%s %s: %w", typ, res.GetName(), err)
		}
		held[res.GetName()] = heldResource{version: res.GetVersion(), msg: msg}
		switch m := msg.(type) {
		case *rmqv3.RouteConfiguration:
			if len(m.GetRoutes()) == 0 {
				r.loss = append(r.loss, fmt.Sprintf("response %d: route %s without routes", r.n, res.GetName()))
			}
		case *endpointv3.ClusterLoadAssignment:
			if len(translate.Targets(m, "")) == 0 {
				r.loss = append(r.loss, fmt.Sprintf("response %d: no endpoints in %s", r.n, res.GetName()))
			}
		case *corev3.TypedExtensionConfig:
			var proxy rmqv3.RocketmqProxy
			if err := m.GetTypedConfig().UnmarshalTo(&proxy); err != nil {
				return err
			}
			var topics []string
			for _, rt := range proxy.GetRouteConfig().GetRoutes() {
				topics = append(topics, rt.GetMatch().GetTopic().GetExact())
				// Make before break: the clusters an ECDS config names were sent before it.
				for _, typ := range []string{translate.ClusterType, translate.EndpointType} {
					if _, ok := r.held[typ][rt.GetRoute().GetCluster()]; !ok {
						r.loss = append(r.loss, fmt.Sprintf("response %d: ECDS names %s before its %s", r.n, rt.GetRoute().GetCluster(), typ[strings.LastIndex(typ, ".")+1:]))
					}
				}
			}
			slices.Sort(topics)
			topics = slices.Compact(topics)
			for _, had := range r.ecds {
				if !slices.Contains(topics, had) {
					r.loss = append(r.loss, fmt.Sprintf("response %d: ECDS without %s", r.n, had))
				}
			}
			r.ecds = topics
			r.ecdsLog = append(r.ecdsLog, timed{time.Now(), strings.Join(topics, " ")})
		}
	}
	for _, name := range resp.GetRemovedResources() {
		delete(held, name)
		r.loss = append(r.loss, fmt.Sprintf("response %d: %s %s removed", r.n, typ[strings.LastIndex(typ, ".")+1:], name))
	}
	for _, topic := range r.topics {
		s := r.sendLocked(topic)
		if strings.HasPrefix(s, "no endpoints of ") {
			// A route names a cluster whose endpoints are on their way (routes by name are not held back for
			// them; the Go sidecar waits for the endpoints before it answers): not a state a client acts on.
			continue
		}
		if l := r.sends[topic]; len(l) == 0 || l[len(l)-1].value != s {
			r.sends[topic] = append(r.sends[topic], timed{time.Now(), s})
		}
	}
	return nil
}

// sendLocked describes where a topic's sends go, as "broker:weight ..." of the send route's cluster (its
// writable subset unless it is a weighted send cluster), or why that is not known.
func (r *xdsRecorder) sendLocked(topic string) string {
	rc, ok := r.held[translate.RouteType][topic]
	if !ok {
		return "no route"
	}
	routes := rc.msg.(*rmqv3.RouteConfiguration).GetRoutes()
	if len(routes) == 0 {
		return "no routes"
	}
	send := routes[0].GetRoute()
	cla, ok := r.held[translate.EndpointType][send.GetCluster()]
	if !ok {
		return "no endpoints of " + send.GetCluster()
	}
	subset := ""
	if send.GetMetadataMatch() != nil {
		subset = translate.SubsetWritable
	}
	return describeTargets(translate.Targets(cla.msg.(*endpointv3.ClusterLoadAssignment), subset))
}

func describeTargets(targets []translate.Target) string {
	var out []string
	for _, tg := range targets {
		out = append(out, fmt.Sprintf("%s:%d", tg.BrokerName, tg.Weight))
	}
	slices.Sort(out)
	return strings.Join(out, " ")
}

// waitSend waits until the topic's sends go where want says (describeTargets' form).
func (r *xdsRecorder) waitSend(t *testing.T, topic, want string) {
	t.Helper()
	waitUntil(t, 30*time.Second, r.node+": sends of "+topic+" to "+want, func() (bool, string) {
		r.mu.Lock()
		defer r.mu.Unlock()
		got := r.sendLocked(topic)
		return got == want, got
	})
}

// checkSendSince fails the test unless every state of the topic's sends from since to until is one of allowed:
// the last one before since, and each change up to until.
func (r *xdsRecorder) checkSendSince(t *testing.T, topic string, since, until time.Time, allowed ...string) {
	t.Helper()
	r.mu.Lock()
	l := slices.Clone(r.sends[topic])
	r.mu.Unlock()
	for i, s := range l {
		if s.at.After(until) || (i+1 < len(l) && !l[i+1].at.After(since)) {
			continue // after the window, or followed by another state before it
		}
		if !slices.Contains(allowed, s.value) {
			t.Fatalf("%s: sends of %s went to %q at %v (allowed: %q)", r.node, topic, s.value, s.at.Format(time.StampMilli), allowed)
		}
	}
}

// waitHolds waits until the client holds a resource.
func (r *xdsRecorder) waitHolds(t *testing.T, typeURL, name string) {
	t.Helper()
	waitUntil(t, 30*time.Second, r.node+" holds "+name, func() (bool, string) {
		r.mu.Lock()
		defer r.mu.Unlock()
		_, ok := r.held[typeURL][name]
		return ok, ""
	})
}

// waitECDS waits until the ECDS route table holds exactly these topics.
func (r *xdsRecorder) waitECDS(t *testing.T, topics ...string) {
	t.Helper()
	waitUntil(t, 30*time.Second, r.node+": ECDS topics "+fmt.Sprint(topics), func() (bool, string) {
		r.mu.Lock()
		defer r.mu.Unlock()
		return slices.Equal(r.ecds, topics), fmt.Sprint(r.ecds)
	})
}

// ecdsSince returns the ECDS route tables received after t.
func (r *xdsRecorder) ecdsSince(t time.Time) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.ecdsLog {
		if e.at.After(t) {
			out = append(out, e.value)
		}
	}
	return out
}

// snapshot returns what the client holds: "type name" → version.
func (r *xdsRecorder) snapshot() map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]string{}
	for typ, held := range r.held {
		for name, h := range held {
			out[typ[strings.LastIndex(typ, ".")+1:]+" "+name] = h.version
		}
	}
	return out
}

func (r *xdsRecorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

func (r *xdsRecorder) ended() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

func (r *xdsRecorder) assertNoLoss(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.loss) > 0 {
		t.Errorf("%s: of %d responses, some took away what the client needs:\n%s", r.node, r.n, strings.Join(r.loss, "\n"))
	}
}

// diffHeld describes how two snapshots differ.
func diffHeld(before, after map[string]string) string {
	var out []string
	for k, v := range before {
		if w, ok := after[k]; !ok {
			out = append(out, k+" gone")
		} else if w != v {
			out = append(out, fmt.Sprintf("%s %s → %s", k, v, w))
		}
	}
	for k := range after {
		if _, ok := before[k]; !ok {
			out = append(out, k+" new")
		}
	}
	slices.Sort(out)
	return strings.Join(out, "; ")
}
