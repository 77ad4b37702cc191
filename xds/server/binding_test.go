package server

import (
	"context"
	"slices"
	"testing"
	"time"

	rmqv3 "github.com/envoyproxy/go-control-plane/contrib/envoy/extensions/filters/network/rocketmq_proxy/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/rocketpilot/rocketpilot/internal/promtest"
	"github.com/rocketpilot/rocketpilot/nameserver/embedded"
	"github.com/rocketpilot/rocketpilot/routing"
	"github.com/rocketpilot/rocketpilot/xds/cache"
	"github.com/rocketpilot/rocketpilot/xds/translate"
)

// ecdsTopics decodes an ECDS response's route table into the topics it routes, sorted.
func ecdsTopics(t *testing.T, r *discovery.DeltaDiscoveryResponse) []string {
	t.Helper()
	if r.TypeUrl != translate.ExtensionType || len(r.Resources) != 1 {
		t.Fatalf("want one ECDS resource, got %s %v", r.TypeUrl, names(r))
	}
	var ext corev3.TypedExtensionConfig
	if err := r.Resources[0].Resource.UnmarshalTo(&ext); err != nil {
		t.Fatal(err)
	}
	var proxy rmqv3.RocketmqProxy
	if err := ext.TypedConfig.UnmarshalTo(&proxy); err != nil {
		t.Fatal(err)
	}
	var topics []string
	for _, rt := range proxy.GetRouteConfig().GetRoutes() {
		topics = append(topics, rt.GetMatch().GetTopic().GetExact())
	}
	slices.Sort(topics)
	return slices.Compact(topics)
}

// TestBindingsScopeANodesRouteTable: a pod's sidecar (namespace and labels in its node metadata) gets the route
// table of the topics bound to it, and a new binding changes it on the open stream.
func TestBindingsScopeANodesRouteTable(t *testing.T) {
	s := demoStack(t)
	labels, _ := structpb.NewStruct(map[string]any{"app": "orders"})
	n := &corev3.Node{Id: "orders-7f9c", Metadata: &structpb.Struct{Fields: map[string]*structpb.Value{
		cache.MetadataNamespaceKey: structpb.NewStringValue("shop"),
		cache.MetadataLabelsKey:    structpb.NewStructValue(labels),
	}}}
	ordersPods := func(p routing.Proxy) bool { return p.Namespace == "shop" && p.Labels["app"] == "orders" }
	s.table.SetBindings([]routing.Binding{{Name: "shop/orders", Selects: ordersPods, Topics: []string{"TopicTest"}}})

	d := openDelta(t, s.addr, "unused")
	d.node = n
	d.subscribe(translate.ExtensionType, translate.ExtensionConfigName)
	r := d.next()
	if got := ecdsTopics(t, r); !slices.Equal(got, []string{"TopicTest"}) {
		t.Fatalf("bound route table %v", got)
	}
	d.ack(r)
	waitFor(t, "the node counted as bound", func() bool { return s.table.Proxies().Count(ordersPods) == 1 })

	s.table.SetBindings([]routing.Binding{{Name: "shop/orders", Selects: ordersPods, Topics: []string{"TopicTest", "demo-orders-001"},
		ConsumerGroups: []string{"orders-cg"}}})
	r = d.next()
	if got := ecdsTopics(t, r); !slices.Equal(got, []string{"TopicTest", "demo-orders-001"}) {
		t.Fatalf("after the binding changed: %v", got)
	}
	d.ack(r)
	s.table.SetBindings(nil)
	if got := ecdsTopics(t, d.next()); len(got) != 0 {
		t.Fatalf("unbound node still routes %v", got)
	}
}

// Strict scope, by a strict TopicBinding: the node gets the topics its bindings grant, and a topic they do not is
// answered in removed_resources at once, its changes never reach the node, nor its clusters the node's cluster
// view; the topics its metadata claims grant nothing. Granting it later sends it; a second node, selected by no
// strict binding, is served as before. Every refused subscription is counted.
func TestStrictScopeByBinding(t *testing.T) {
	s := demoStack(t)
	testTopic(s, "strict-granted", 6, "b1")
	testTopic(s, "strict-refused", 6, "b1", "b2")
	refusedCluster := clusterOf(t, s, "strict-refused")
	selectsShop := func(p routing.Proxy) bool { return p.ID == "shop-1" }
	s.table.SetBindings([]routing.Binding{{Name: "shop/orders", Selects: selectsShop, Topics: []string{"strict-granted"}, Strict: true}})

	// The node's metadata claims strict-refused too: under strict scope it grants nothing.
	d := openDelta(t, s.addr, "shop-1", "strict-refused")
	d.subscribe(translate.RouteType, "strict-granted", "strict-refused")
	r := d.next()
	expect(t, r, translate.RouteType, []string{"strict-granted"}, []string{"strict-refused"})
	d.ack(r)
	d.subscribe(translate.ClusterType, "*")
	r = d.next()
	if slices.Contains(names(r), refusedCluster) {
		t.Fatalf("the refused topic's cluster %s is in the node's cluster view: %v", refusedCluster, names(r))
	}
	d.ack(r)
	// Nor by name: a cluster name learned elsewhere (the admin API shows them) gets neither the cluster nor its
	// endpoints, the brokers' addresses.
	for _, typeURL := range []string{translate.ClusterType, translate.EndpointType} {
		d.subscribe(typeURL, refusedCluster)
		r = d.next()
		expect(t, r, typeURL, nil, []string{refusedCluster})
		d.ack(r)
	}
	testTopic(s, "strict-refused", 4, "b1", "b2") // a change of the refused topic
	d.quiet("a change of a topic the node may not subscribe to")

	// Another node, which no strict binding selects, gets the same topic.
	other := openDelta(t, s.addr, "other-1")
	other.subscribe(translate.RouteType, "strict-refused")
	expect(t, other.next(), translate.RouteType, []string{"strict-refused"}, nil)

	// Granted now: the node, still subscribed, gets it.
	s.table.SetBindings([]routing.Binding{{Name: "shop/orders", Selects: selectsShop, Topics: []string{"strict-granted", "strict-refused"}, Strict: true}})
	for {
		r = d.next()
		if r.TypeUrl == translate.RouteType {
			break
		}
		d.ack(r)
	}
	expect(t, r, translate.RouteType, []string{"strict-refused"}, nil)
	d.ack(r)
	// And revoked: removed.
	s.table.SetBindings([]routing.Binding{{Name: "shop/orders", Selects: selectsShop, Topics: []string{"strict-granted"}, Strict: true}})
	for {
		r = d.next()
		if r.TypeUrl == translate.RouteType {
			break
		}
		d.ack(r)
	}
	expect(t, r, translate.RouteType, nil, []string{"strict-refused"})
	reg := prometheus.NewRegistry()
	reg.MustRegister(s.cache)
	if got := promtest.Sum(promtest.Families(t, reg), "rocketpilot_xds_scope_refused_total", nil); got != 1 {
		t.Fatalf("%v refused subscriptions counted, want 1", got)
	}
}

// Strict scope for every node (cache.Options.StrictScope): a node with no binding gets nothing by name, over
// state of the world too.
func TestStrictScopeEverywhere(t *testing.T) {
	s := startStackWith(t, embedded.LoadDemo, Options{}, cache.Options{StrictScope: true})
	d := openDelta(t, s.addr, "unbound-1")
	d.subscribe(translate.RouteType, embedded.DemoTopic)
	expect(t, d.next(), translate.RouteType, nil, []string{embedded.DemoTopic})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sotw, err := dialADS(t, s.addr).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := sotw.Send(&discovery.DiscoveryRequest{Node: &corev3.Node{Id: "unbound-2"}, TypeUrl: translate.RouteType,
		ResourceNames: []string{embedded.DemoTopic}}); err != nil {
		t.Fatal(err)
	}
	resp, err := sotw.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetResources()) != 0 {
		t.Fatalf("state of the world served %d resources to a node without a binding", len(resp.GetResources()))
	}
}
