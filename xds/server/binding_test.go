package server

import (
	"slices"
	"testing"

	rmqv3 "github.com/envoyproxy/go-control-plane/contrib/envoy/extensions/filters/network/rocketmq_proxy/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/types/known/structpb"

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
