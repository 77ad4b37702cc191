package controllers

import (
	"context"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/rocketpilot/rocketpilot/crds/v1alpha1"
	"github.com/rocketpilot/rocketpilot/nameserver/embedded"
	"github.com/rocketpilot/rocketpilot/xds/cache"
	"github.com/rocketpilot/rocketpilot/xds/translate"
)

// A node's NACK of a route a TopicRoute shapes shows in that TopicRoute's status (and proxy-status), and clears
// when the node accepts a later version.
func TestNackShowsInTheOwningTopicRoutesStatus(t *testing.T) {
	p := startPlane(t, "r1", "")
	ns := demoNameServer(t)
	n := namespace(t)
	readySource(t, n, ns)
	const topic = "demo-inventory-003"
	tr := &v1alpha1.TopicRoute{ObjectMeta: objectMeta(n, "nacked"), Spec: v1alpha1.TopicRouteSpec{
		Topics: v1alpha1.TopicSelector{Exact: []string{topic}},
		Send: &v1alpha1.SendRule{Backends: []v1alpha1.Backend{
			{BrokerCluster: embedded.DemoCluster, Weight: ptr.To[int32](80)},
			{BrokerCluster: embedded.DemoClusterB, Weight: ptr.To[int32](20)},
		}},
	}}
	create(t, tr)
	other := &v1alpha1.TopicRoute{ObjectMeta: objectMeta(n, "bystander"), Spec: v1alpha1.TopicRouteSpec{
		Topics: v1alpha1.TopicSelector{Exact: []string{"demo-inventory-004"}}}}
	create(t, other)
	eventually(t, "both accepted, nothing rejected", func() (bool, string) {
		for _, o := range []*v1alpha1.TopicRoute{tr, other} {
			if ok, why := conditionIs(get(t, o).Status.Conditions, v1alpha1.ConditionRejected, metav1.ConditionFalse); !ok {
				return false, why
			}
		}
		return true, ""
	})

	conn, err := grpc.NewClient(p.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The route must be the TopicRoute's (weighted) before it is rejected.
	var resp *discovery.DeltaDiscoveryResponse
	if err := st.Send(&discovery.DeltaDiscoveryRequest{Node: &corev3.Node{Id: "picky-envoy"}, TypeUrl: translate.RouteType,
		ResourceNamesSubscribe: []string{topic}}); err != nil {
		t.Fatal(err)
	}
	if resp, err = st.Recv(); err != nil || len(resp.Resources) != 1 {
		t.Fatalf("first response %v: %v", resp, err)
	}
	const complaint = "Proto constraint validation failed: pretend the weights are unsupported"
	nackedAt := time.Now()
	if err := st.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: translate.RouteType, ResponseNonce: resp.Nonce,
		ErrorDetail: &rpcstatus.Status{Code: 3, Message: complaint}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Rejected in the owning TopicRoute's status", func() (bool, string) {
		got := get(t, tr)
		if ok, why := conditionIs(got.Status.Conditions, v1alpha1.ConditionRejected, metav1.ConditionTrue); !ok {
			return false, why
		}
		c := findCondition(got.Status.Conditions, v1alpha1.ConditionRejected)
		return c.Reason == v1alpha1.ReasonNacked && strings.Contains(c.Message, "picky-envoy") && strings.Contains(c.Message, complaint), c.Message
	})
	t.Logf("the NACK reached the TopicRoute's status in %v", time.Since(nackedAt).Round(time.Millisecond))
	if ok, why := conditionIs(get(t, other).Status.Conditions, v1alpha1.ConditionRejected, metav1.ConditionFalse); !ok {
		t.Fatalf("a TopicRoute whose topics were not rejected: %s", why)
	}
	var nacked bool
	for _, s := range p.cache.Streams() {
		for _, ts := range s.Types {
			nacked = nacked || s.Node == "picky-envoy" && ts.State == cache.Nacked && ts.NackError == complaint
		}
	}
	if !nacked {
		t.Fatalf("proxy status does not show the NACK: %+v", p.cache.Streams())
	}

	// The operator fixes the policy; the node accepts the new version and the condition clears.
	fixed := get(t, tr)
	fixed.Spec.Send = nil
	if err := k8s.Update(context.Background(), fixed); err != nil {
		t.Fatal(err)
	}
	if resp, err = st.Recv(); err != nil || len(resp.Resources) != 1 {
		t.Fatalf("the fixed route: %v: %v", resp, err)
	}
	if err := st.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: translate.RouteType, ResponseNonce: resp.Nonce}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Rejected cleared after the ACK", func() (bool, string) {
		return conditionIs(get(t, tr).Status.Conditions, v1alpha1.ConditionRejected, metav1.ConditionFalse)
	})
	for _, o := range []client.Object{tr, other} {
		_ = k8s.Delete(context.Background(), o)
	}
}

func findCondition(conds []metav1.Condition, kind string) metav1.Condition {
	for _, c := range conds {
		if c.Type == kind {
			return c
		}
	}
	return metav1.Condition{}
}
