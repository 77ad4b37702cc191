package controllers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	rmqv3 "github.com/envoyproxy/go-control-plane/contrib/envoy/extensions/filters/network/rocketmq_proxy/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/rocketpilot/rocketpilot/crds/v1alpha1"
	"github.com/rocketpilot/rocketpilot/nameserver/embedded"
	"github.com/rocketpilot/rocketpilot/nameserver/watcher"
	"github.com/rocketpilot/rocketpilot/routing"
	"github.com/rocketpilot/rocketpilot/xds/sidecar"
	"github.com/rocketpilot/rocketpilot/xds/translate"
)

// create creates obj and deletes it when the test ends: envtest runs no namespace controller, so an object
// outlives its test's namespace, and the controllers of the next test (or of the next -count iteration) would
// reconcile it.
func create(t *testing.T, obj client.Object) {
	t.Helper()
	if err := k8s.Create(context.Background(), obj); err != nil {
		t.Fatalf("create %s: %v", obj.GetName(), err)
	}
	t.Cleanup(func() {
		if err := k8s.Delete(context.Background(), obj); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete %s: %v", obj.GetName(), err)
		}
	})
}

func get[T client.Object](t *testing.T, obj T) T {
	t.Helper()
	if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(obj), obj); err != nil {
		t.Fatalf("get %s: %v", obj.GetName(), err)
	}
	return obj
}

func conditionIs(conds []metav1.Condition, kind string, status metav1.ConditionStatus) (bool, string) {
	c := meta.FindStatusCondition(conds, kind)
	if c == nil {
		return false, kind + " not set"
	}
	return c.Status == status, fmt.Sprintf("%s=%s %s: %s", kind, c.Status, c.Reason, c.Message)
}

// readySource creates a NameServerSource for the demo NameServer and waits until it is Ready.
func readySource(t *testing.T, namespace string, ns *embedded.NameServer) *v1alpha1.NameServerSource {
	t.Helper()
	nss := &v1alpha1.NameServerSource{ObjectMeta: objectMeta(namespace, "demo"),
		Spec: v1alpha1.NameServerSourceSpec{Addresses: []string{ns.Addr()}}}
	create(t, nss)
	eventually(t, "NameServerSource Ready", func() (bool, string) {
		got := get(t, nss)
		return conditionIs(got.Status.Conditions, v1alpha1.ConditionReady, metav1.ConditionTrue)
	})
	return nss
}

func TestNameServerSourceReachesReady(t *testing.T) {
	startPlane(t, "r1", "")
	ns := demoNameServer(t)
	n := namespace(t)
	nss := readySource(t, n, ns)
	if nss.Status.Topics != int32(ns.TopicCount()) || nss.Status.Brokers != 4 || len(nss.Status.NameServers) != 1 ||
		!nss.Status.NameServers[0].Reachable || nss.Status.LastSyncTime == nil || nss.Status.ObservedGeneration != 1 {
		t.Fatalf("status %+v, want %d topics, 4 brokers, one reachable NameServer", nss.Status, ns.TopicCount())
	}
	if nss.Spec.PollInterval == nil || nss.Spec.PollInterval.Duration != 30*time.Second || nss.Spec.Discovery != v1alpha1.DiscoveryAllTopics ||
		nss.Spec.FrameLimit != 64<<20 {
		t.Fatalf("the API server did not apply the schema's defaults: %+v", nss.Spec)
	}
	if ok, why := conditionIs(nss.Status.Conditions, v1alpha1.ConditionDegraded, metav1.ConditionFalse); !ok {
		t.Fatal(why)
	}

	// A NameServer that goes away keeps the last good routes and shows as Degraded.
	ns.Pause()
	eventually(t, "Degraded after the NameServer stops answering", func() (bool, string) {
		return conditionIs(get(t, nss).Status.Conditions, v1alpha1.ConditionDegraded, metav1.ConditionTrue)
	})
	if got := get(t, nss).Status.Topics; got != int32(ns.TopicCount()) {
		t.Fatalf("%d topics after an outage, want the last good %d", got, ns.TopicCount())
	}
	if err := ns.Resume(); err != nil {
		t.Fatal(err)
	}
}

func TestNameServerSourceFollowsANameService(t *testing.T) {
	p := startPlane(t, "r1", "")
	ns := demoNameServer(t)
	n := namespace(t)
	svc := &unstructured.Unstructured{}
	svc.SetGroupVersionKind(NameServiceGVK)
	svc.SetNamespace(n)
	svc.SetName("rocketmq")
	create(t, svc)
	nss := &v1alpha1.NameServerSource{ObjectMeta: objectMeta(n, "operator"),
		Spec: v1alpha1.NameServerSourceSpec{NameServiceRef: &v1alpha1.NameServiceReference{Name: "rocketmq"}}}
	create(t, nss)
	eventually(t, "NoAddresses while the NameService lists none", func() (bool, string) {
		c := meta.FindStatusCondition(get(t, nss).Status.Conditions, v1alpha1.ConditionReady)
		return c != nil && c.Reason == v1alpha1.ReasonNoAddresses, fmt.Sprint(c)
	})
	// rocketmq-operator lists the NameServers' pod IPs; this one lists the embedded NameServer's address.
	if err := unstructured.SetNestedStringSlice(svc.Object, []string{ns.Addr()}, "status", "nameServers"); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Status().Update(context.Background(), svc); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Ready from the NameService's addresses", func() (bool, string) {
		return conditionIs(get(t, nss).Status.Conditions, v1alpha1.ConditionReady, metav1.ConditionTrue)
	})
	if p.table.Topic(embedded.DemoTopic) == nil {
		t.Fatal("the model has no TopicTest")
	}
}

// TestTopicRouteWeightsReachTheServedRoute: a TopicRoute with weights 80/20 over two broker clusters shows up in
// the route a Go sidecar reads; deleting it brings back the NameServer's route.
func TestTopicRouteWeightsReachTheServedRoute(t *testing.T) {
	p := startPlane(t, "r1", "")
	ns := demoNameServer(t)
	n := namespace(t)
	readySource(t, n, ns)
	const topic = "demo-inventory-003" // broker-a (DefaultCluster) and broker-d (ClusterB)
	sc, err := sidecar.Dial(p.addr, sidecar.Options{NodeID: "orders-1"})
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	before, err := sc.Route(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	tr := &v1alpha1.TopicRoute{ObjectMeta: objectMeta(n, "inventory-migration"), Spec: v1alpha1.TopicRouteSpec{
		Topics: v1alpha1.TopicSelector{Prefix: []string{"demo-inventory-00"}},
		Send: &v1alpha1.SendRule{Backends: []v1alpha1.Backend{
			{BrokerCluster: embedded.DemoCluster, Weight: ptr.To[int32](80)},
			{BrokerCluster: embedded.DemoClusterB, Weight: ptr.To[int32](20)},
		}},
	}}
	create(t, tr)
	eventually(t, "the weighted route at the sidecar", func() (bool, string) {
		r, err := sc.Route(ctx, topic)
		if err != nil {
			return false, err.Error()
		}
		w := map[string]uint32{}
		for _, tg := range r.Send {
			w[tg.BrokerName] = tg.Weight
		}
		return w["broker-d"] > 0 && w["broker-a"] == 4*w["broker-d"], fmt.Sprint(w)
	})
	eventually(t, "TopicRoute status", func() (bool, string) {
		got := get(t, tr)
		for _, c := range []string{v1alpha1.ConditionAccepted, v1alpha1.ConditionResolved} {
			if ok, why := conditionIs(got.Status.Conditions, c, metav1.ConditionTrue); !ok {
				return false, why
			}
		}
		return got.Status.MatchedTopics == 9 && got.Status.ObservedGeneration == 1, fmt.Sprint(got.Status.MatchedTopics)
	})
	if err := k8s.Delete(context.Background(), tr); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the NameServer's route back", func() (bool, string) {
		r, err := sc.Route(ctx, topic)
		if err != nil {
			return false, err.Error()
		}
		return r.Cluster == before.Cluster && r.Send[0].Weight == 0, r.Cluster
	})
}

func TestInvalidTopicRoutesAreRejected(t *testing.T) {
	n := namespace(t)
	for _, c := range []struct {
		name string
		spec v1alpha1.TopicRouteSpec
		want string
	}{
		{"consume-weight", v1alpha1.TopicRouteSpec{Topics: v1alpha1.TopicSelector{Exact: []string{"t"}},
			Consume: &v1alpha1.BackendRule{Backends: []v1alpha1.Backend{{BrokerCluster: "A", Weight: ptr.To[int32](5)}}}},
			"weights apply to send only"},
		{"no-topics", v1alpha1.TopicRouteSpec{Topics: v1alpha1.TopicSelector{}}, "topics must give at least one of exact, prefix and regex"},
		{"both-backend-kinds", v1alpha1.TopicRouteSpec{Topics: v1alpha1.TopicSelector{Exact: []string{"t"}},
			Send: &v1alpha1.SendRule{Backends: []v1alpha1.Backend{{BrokerCluster: "A", BrokerNames: []string{"b"}}}}},
			"a backend names either a brokerCluster or brokerNames"},
		{"some-weights", v1alpha1.TopicRouteSpec{Topics: v1alpha1.TopicSelector{Exact: []string{"t"}},
			Send: &v1alpha1.SendRule{Backends: []v1alpha1.Backend{{BrokerCluster: "A", Weight: ptr.To[int32](5)}, {BrokerCluster: "B"}}}},
			"give every send backend a weight, or none"},
		{"ordered-weights", v1alpha1.TopicRouteSpec{Topics: v1alpha1.TopicSelector{Exact: []string{"t"}}, Ordered: true,
			Send: &v1alpha1.SendRule{Backends: []v1alpha1.Backend{{BrokerCluster: "A", Weight: ptr.To[int32](5)}}}},
			"an ordered topic keeps a stable broker/queue mapping"},
		{"bad-topic-name", v1alpha1.TopicRouteSpec{Topics: v1alpha1.TopicSelector{Exact: []string{"no spaces"}}}, "spec.topics.exact[0]"},
		{"pop-invisible-time", v1alpha1.TopicRouteSpec{Topics: v1alpha1.TopicSelector{Exact: []string{"t"}},
			Pop: &v1alpha1.PopRule{ConsumerGroups: []string{"g"}, InvisibleTime: &metav1.Duration{Duration: 13 * time.Hour}}},
			"invisibleTime must be between 1s and 12h"},
		{"pop-bad-group", v1alpha1.TopicRouteSpec{Topics: v1alpha1.TopicSelector{Exact: []string{"t"}},
			Pop: &v1alpha1.PopRule{ConsumerGroups: []string{"no spaces"}}}, "spec.pop.consumerGroups[0]"},
	} {
		err := k8s.Create(context.Background(), &v1alpha1.TopicRoute{ObjectMeta: objectMeta(n, c.name), Spec: c.spec})
		if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want Invalid with %q", c.name, err, c.want)
		}
	}
}

// TestInvalidRegexIsNotAccepted: what the schema cannot check is rejected in status, with the reason.
func TestInvalidRegexIsNotAccepted(t *testing.T) {
	startPlane(t, "r1", "")
	n := namespace(t)
	tr := &v1alpha1.TopicRoute{ObjectMeta: objectMeta(n, "bad-regex"),
		Spec: v1alpha1.TopicRouteSpec{Topics: v1alpha1.TopicSelector{Regex: "orders-(["}}}
	create(t, tr)
	eventually(t, "Accepted=False", func() (bool, string) {
		c := meta.FindStatusCondition(get(t, tr).Status.Conditions, v1alpha1.ConditionAccepted)
		return c != nil && c.Status == metav1.ConditionFalse && c.Reason == v1alpha1.ReasonInvalid &&
			strings.Contains(c.Message, "spec.topics.regex"), fmt.Sprint(c)
	})
}

// ecdsTopics opens a raw delta ADS stream as node id and returns the topics of each ECDS route table it gets.
type ecdsStream struct {
	t  *testing.T
	st discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
}

func openECDS(t *testing.T, addr, id string) *ecdsStream {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	st, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&discovery.DeltaDiscoveryRequest{Node: &corev3.Node{Id: id}, TypeUrl: translate.ExtensionType,
		ResourceNamesSubscribe: []string{translate.ExtensionConfigName}}); err != nil {
		t.Fatal(err)
	}
	return &ecdsStream{t: t, st: st}
}

// next returns the topics of the next ECDS config, ACKing it.
func (e *ecdsStream) next() []string {
	e.t.Helper()
	r, err := e.st.Recv()
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.st.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: r.TypeUrl, ResponseNonce: r.Nonce}); err != nil {
		e.t.Fatal(err)
	}
	var ext corev3.TypedExtensionConfig
	var proxy rmqv3.RocketmqProxy
	if len(r.Resources) != 1 || r.Resources[0].Resource.UnmarshalTo(&ext) != nil || ext.TypedConfig.UnmarshalTo(&proxy) != nil {
		e.t.Fatalf("not an ECDS config: %v", r)
	}
	var topics []string
	for _, rt := range proxy.GetRouteConfig().GetRoutes() {
		topics = append(topics, rt.GetMatch().GetTopic().GetExact())
	}
	slices.Sort(topics)
	return slices.Compact(topics)
}

func TestTopicBindingScopesANodesRouteTable(t *testing.T) {
	p := startPlane(t, "r1", "")
	ns := demoNameServer(t)
	n := namespace(t)
	readySource(t, n, ns)
	tb := &v1alpha1.TopicBinding{ObjectMeta: objectMeta(n, "orders"),
		Spec: v1alpha1.TopicBindingSpec{NodeIDs: []string{"orders-*"}, Topics: []string{embedded.DemoTopic}}}
	create(t, tb)
	eventually(t, "TopicBinding accepted", func() (bool, string) {
		return conditionIs(get(t, tb).Status.Conditions, v1alpha1.ConditionAccepted, metav1.ConditionTrue)
	})
	e := openECDS(t, p.addr, "orders-7f9c")
	if got := e.next(); !slices.Equal(got, []string{embedded.DemoTopic}) {
		t.Fatalf("bound route table %v", got)
	}
	eventually(t, "boundProxies 1", func() (bool, string) {
		got := get(t, tb).Status.BoundProxies
		return got == 1, fmt.Sprint(got)
	})
	tb = get(t, tb)
	tb.Spec.Topics = append(tb.Spec.Topics, "demo-orders-001")
	if err := k8s.Update(context.Background(), tb); err != nil {
		t.Fatal(err)
	}
	if got := e.next(); !slices.Equal(got, []string{embedded.DemoTopic, "demo-orders-001"}) {
		t.Fatalf("after the binding changed: %v", got)
	}

	// spec.strict: the binding becomes an access boundary. A Go sidecar of a selected node resolves a bound topic,
	// and is told another does not exist.
	tb = get(t, tb)
	tb.Spec.Strict = true
	if err := k8s.Update(context.Background(), tb); err != nil {
		t.Fatal(err)
	}
	sc, err := sidecar.Dial(p.addr, sidecar.Options{NodeID: "orders-strict"})
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	eventually(t, "a topic outside the strict binding refused", func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := sc.Resolve(ctx, "demo-orders-002")
		return errors.Is(err, sidecar.ErrTopicNotFound), fmt.Sprint(err)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := sc.Resolve(ctx, "demo-orders-001"); err != nil {
		t.Fatalf("a topic the strict binding grants: %v", err)
	}
}

// TestTwoReplicas: two instances against one API server both serve the same xDS from their own models; only
// the one holding the lease writes status, and when it goes, the other takes over.
func TestTwoReplicas(t *testing.T) {
	const lease = "rocketpilot-two-replicas"
	a := startPlane(t, "replica-a", lease)
	b := startPlane(t, "replica-b", lease)
	ns := demoNameServer(t)
	n := namespace(t)
	nss := readySource(t, n, ns)
	tr := &v1alpha1.TopicRoute{ObjectMeta: objectMeta(n, "drain"), Spec: v1alpha1.TopicRouteSpec{
		Topics: v1alpha1.TopicSelector{Exact: []string{embedded.DemoTopic}}, Drain: &v1alpha1.Drain{BrokerNames: []string{"broker-b"}}}}
	create(t, tr)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	route := func(p *plane) *sidecar.Route {
		sc, err := sidecar.Dial(p.addr, sidecar.Options{NodeID: "probe-" + p.id})
		if err != nil {
			t.Fatal(err)
		}
		defer sc.Close()
		var r *sidecar.Route
		eventually(t, p.id+" serves the drained route", func() (bool, string) {
			if r, err = sc.Route(ctx, embedded.DemoTopic); err != nil {
				return false, err.Error()
			}
			return len(r.Send) == 1 && r.Send[0].BrokerName == "broker-a", fmt.Sprint(r.Send)
		})
		return r
	}
	ra, rb := route(a), route(b)
	if ra.Cluster != rb.Cluster || fmt.Sprint(ra.Data) != fmt.Sprint(rb.Data) {
		t.Fatalf("the replicas serve different routes:\n%s %+v\n%s %+v", ra.Cluster, ra.Data, rb.Cluster, rb.Data)
	}

	leader, follower := a, b
	if !a.leader.Load() {
		leader, follower = b, a
	}
	if !leader.leader.Load() || follower.leader.Load() {
		t.Fatalf("leaders: a %v, b %v; want exactly one", a.leader.Load(), b.leader.Load())
	}
	var l coordinationv1.Lease
	if err := k8s.Get(ctx, types.NamespacedName{Namespace: "default", Name: lease}, &l); err != nil || ptr.Deref(l.Spec.HolderIdentity, "") == "" {
		t.Fatalf("lease %s: %v, holder %q", lease, err, ptr.Deref(l.Spec.HolderIdentity, ""))
	}
	statusWriters := func(obj client.Object) []string {
		var out []string
		for _, m := range get(t, obj).GetManagedFields() {
			if m.Subresource == "status" {
				out = append(out, m.Manager)
			}
		}
		return out
	}
	eventually(t, "status written by the leader only", func() (bool, string) {
		w := append(statusWriters(nss), statusWriters(tr)...)
		return len(w) == 2 && w[0] == leader.id && w[1] == leader.id, fmt.Sprint(w)
	})

	// The leader goes away: the other takes the lease and writes status from then on.
	leader.stop()
	eventually(t, follower.id+" elected", func() (bool, string) { return follower.leader.Load(), "" })
	ns.Pause()
	eventually(t, "Degraded written by the new leader", func() (bool, string) {
		ok, why := conditionIs(get(t, nss).Status.Conditions, v1alpha1.ConditionDegraded, metav1.ConditionTrue)
		return ok && slices.Contains(statusWriters(nss), follower.id), why + fmt.Sprint(statusWriters(nss))
	})
	if err := ns.Resume(); err != nil {
		t.Fatal(err)
	}
}

// TestExamplesReachReadyAndAccepted applies every manifest of examples/ (the NameServerSource pointed at this
// test's demo NameServer instead of the demo's fixed address) and waits for each to be Ready or Accepted.
func TestExamplesReachReadyAndAccepted(t *testing.T) {
	startPlane(t, "r1", "")
	ns := demoNameServer(t)
	n := namespace(t)
	files, _ := filepath.Glob(filepath.Join("..", "examples", "*.yaml"))
	var objs []*unstructured.Unstructured
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		docs, err := splitDocuments(b)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range docs {
			u := &unstructured.Unstructured{}
			if err := sigsyaml.Unmarshal(d, &u.Object); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			u.SetNamespace(n)
			if u.GetKind() == "NameServerSource" {
				unstructured.SetNestedStringSlice(u.Object, []string{ns.Addr()}, "spec", "addresses")
			}
			create(t, u)
			objs = append(objs, u)
		}
	}
	if len(objs) < 4 {
		t.Fatalf("only %d example objects", len(objs))
	}
	for _, u := range objs {
		want := v1alpha1.ConditionAccepted
		if u.GetKind() == "NameServerSource" {
			want = v1alpha1.ConditionReady
		}
		eventually(t, u.GetKind()+" "+u.GetName()+" "+want, func() (bool, string) {
			if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(u), u); err != nil {
				return false, err.Error()
			}
			conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
			for _, c := range conds {
				m, _ := c.(map[string]any)
				if m["type"] == want {
					return m["status"] == "True", fmt.Sprint(m)
				}
			}
			return false, "no condition yet"
		})
	}
}

// TestFileValidationMatchesTheAPIServer: the file source's validator accepts and rejects what the API server
// does, with the same messages, because it runs the same schema and CEL code on the same CRDs.
func TestFileValidationMatchesTheAPIServer(t *testing.T) {
	n := namespace(t)
	v, err := NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	docs := []string{
		`{kind: TopicRoute, metadata: {name: ok}, spec: {topics: {exact: [a]}, send: {backends: [{brokerCluster: A, weight: 1}]}}}`,
		`{kind: TopicRoute, metadata: {name: bad1}, spec: {topics: {}}}`,
		`{kind: TopicRoute, metadata: {name: bad2}, spec: {topics: {exact: [a]}, consume: {backends: [{brokerNames: [b], weight: 3}]}}}`,
		`{kind: TopicRoute, metadata: {name: bad3}, spec: {topics: {prefix: ["x y"]}}}`,
		`{kind: TopicRoute, metadata: {name: bad4}, spec: {topics: {exact: [a]}, send: {backends: [{brokerCluster: A, weight: 0}]}}}`,
		`{kind: TopicRoute, metadata: {name: bad5}, spec: {topics: {exact: [a]}, send: {backends: [{brokerCluster: A, weight: 2000}]}}}`,
		`{kind: TopicRoute, metadata: {name: pop-ok}, spec: {topics: {exact: [a]}, pop: {consumerGroups: [g1, "%RETRY%g2"], invisibleTime: 12h}}}`,
		`{kind: TopicRoute, metadata: {name: pop-ok2}, spec: {topics: {exact: [a]}, pop: {consumerGroups: [g1]}}}`,
		`{kind: TopicRoute, metadata: {name: pop-bad1}, spec: {topics: {exact: [a]}, pop: {consumerGroups: [g1], invisibleTime: 500ms}}}`,
		`{kind: TopicRoute, metadata: {name: pop-bad2}, spec: {topics: {exact: [a]}, pop: {consumerGroups: [g1], invisibleTime: 13h}}}`,
		`{kind: TopicRoute, metadata: {name: pop-bad3}, spec: {topics: {exact: [a]}, pop: {consumerGroups: []}}}`,
		`{kind: TopicRoute, metadata: {name: pop-bad4}, spec: {topics: {exact: [a]}, pop: {consumerGroups: ["a b"]}}}`,
		`{kind: TopicRoute, metadata: {name: pop-bad5}, spec: {topics: {exact: [a]}, pop: {consumerGroups: [g, g]}}}`,
		`{kind: TopicRoute, metadata: {name: pop-bad6}, spec: {topics: {exact: [a]}, pop: {invisibleTime: 8s}}}`,
		`{kind: NameServerSource, metadata: {name: ok}, spec: {addresses: ["10.0.0.1:9876"]}}`,
		`{kind: NameServerSource, metadata: {name: bad1}, spec: {}}`,
		`{kind: NameServerSource, metadata: {name: bad2}, spec: {addresses: ["10.0.0.1:9876"], pollInterval: 10ms}}`,
		`{kind: NameServerSource, metadata: {name: bad3}, spec: {addresses: ["no-port"]}}`,
		`{kind: TopicBinding, metadata: {name: ok}, spec: {nodeIDs: ["a-*"], topics: [t]}}`,
		`{kind: TopicBinding, metadata: {name: bad1}, spec: {nodeIDs: ["a"], podSelector: {}, topics: [t]}}`,
		`{kind: TopicBinding, metadata: {name: bad2}, spec: {nodeIDs: ["a"]}}`,
		`{kind: TopicBinding, metadata: {name: bad3}, spec: {podSelector: {matchExpressions: [{key: app, operator: Equals, values: [x]}]}, topics: [t]}}`,
		`{kind: TopicBinding, metadata: {name: bad4}, spec: {podSelector: {matchExpressions: [{key: app, operator: In}]}, topics: [t]}}`,
		`{kind: TopicBinding, metadata: {name: bad5}, spec: {podSelector: {matchExpressions: [{key: app, operator: Exists, values: [x]}]}, topics: [t]}}`,
		`{kind: TopicBinding, metadata: {name: ok2}, spec: {podSelector: {matchExpressions: [{key: app, operator: NotIn, values: [x]}, {key: tier, operator: DoesNotExist}]}, topics: [t]}}`,
	}
	for _, d := range docs {
		var obj map[string]any
		if err := sigsyaml.Unmarshal([]byte(d), &obj); err != nil {
			t.Fatal(err)
		}
		obj["apiVersion"] = "rocketpilot.io/v1alpha1"
		obj["metadata"].(map[string]any)["namespace"] = n
		u := &unstructured.Unstructured{Object: obj}
		u = u.DeepCopy()
		apiErr := k8s.Create(context.Background(), u, client.DryRunAll)
		fileErr := v.Validate(context.Background(), intsToInt64(obj))
		if (apiErr == nil) != (fileErr == nil) {
			t.Errorf("%s\n  API server: %v\n  file source: %v", d, apiErr, fileErr)
			continue
		}
		if apiErr == nil {
			continue
		}
		// Every CEL message and field path the API server reports, the file source reports too.
		causes := apiCauses(apiErr)
		if len(causes) == 0 {
			t.Errorf("%s: the API server gave no causes: %v", d, apiErr)
		}
		for _, cause := range causes {
			if !strings.Contains(fileErr.Error(), cause) {
				t.Errorf("%s\n  API server: %v\n  file source lacks %q: %v", d, apiErr, cause, fileErr)
			}
		}
	}
}

func apiCauses(err error) []string {
	var out []string
	if s, ok := err.(apierrors.APIStatus); ok && s.Status().Details != nil {
		for _, c := range s.Status().Details.Causes {
			out = append(out, c.Field)
			if i := strings.LastIndex(c.Message, ": "); i >= 0 {
				out = append(out, c.Message[i+2:])
			}
		}
	}
	return out
}

// intsToInt64 makes the numbers of a decoded document what the API server's decoder makes them.
func intsToInt64(v map[string]any) map[string]any {
	b, _ := json.Marshal(v)
	var out map[string]any
	if err := utiljson.Unmarshal(b, &out); err != nil {
		panic(err)
	}
	return out
}

// TestPruneDropsWhatTheAPIServerNoLongerLists: resources deleted while no manager watched (after a lost lease)
// leave the model when the next manager prunes; those still listed stay, and so does the command line's source,
// which no resource names.
func TestPruneDropsWhatTheAPIServerNoLongerLists(t *testing.T) {
	n := namespace(t)
	ns := demoNameServer(t)
	table := routing.NewTable()
	sources := NewSources(table, watcher.Options{RateLimit: 1e6}, nil)
	defer sources.Close()
	policies := NewPolicies(table)
	kept := &v1alpha1.TopicRoute{ObjectMeta: objectMeta(n, "kept"), Spec: v1alpha1.TopicRouteSpec{Topics: v1alpha1.TopicSelector{Exact: []string{"a"}}}}
	create(t, kept)
	for _, key := range []string{n + "/kept", n + "/gone"} {
		policies.SetRoute(key, "1", &routing.Policy{Name: key, Match: routing.TopicMatch{Exact: []string{"a"}}})
	}
	policies.SetBinding(n+"/gone", "1", &routing.Binding{Name: n + "/gone", Selects: func(routing.Proxy) bool { return true }})
	if err := sources.Set(n+"/gone", SourceSpec{Addrs: []string{ns.Addr()}, Mode: watcher.ModeAllTopics}); err != nil {
		t.Fatal(err)
	}
	if err := sources.Set(FlagSource, SourceSpec{Addrs: []string{ns.Addr()}, Mode: watcher.ModeAllTopics}); err != nil {
		t.Fatal(err)
	}
	if err := Prune(context.Background(), k8s, sources, policies, n); err != nil {
		t.Fatal(err)
	}
	routes, bindings := policies.Keys()
	if !slices.Equal(routes, []string{n + "/kept"}) || len(bindings) != 0 || !slices.Equal(sources.Keys(), []string{FlagSource}) {
		t.Fatalf("after prune: routes %v, bindings %v, sources %v", routes, bindings, sources.Keys())
	}
}
