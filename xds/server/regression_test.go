package server

// Regressions FuzzDeltaProtocol found in the cache, each reduced to its shortest form.

import (
	"slices"
	"testing"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"

	"github.com/rocketpilot/rocketpilot/xds/translate"
)

func TestUnsubscribedConfigIsNotPushed(t *testing.T) {
	s := demoStack(t)
	testTopic(s, "conf-a", 6, "b1")
	d := openDelta(t, s.addr, "envoy-x", "conf-a")
	d.subscribe(translate.ExtensionType, translate.ExtensionConfigName)
	r := d.next()
	d.ack(r)
	d.send(&discovery.DeltaDiscoveryRequest{TypeUrl: translate.ExtensionType, ResponseNonce: r.Nonce,
		ResourceNamesUnsubscribe: []string{translate.ExtensionConfigName}})
	d.quiet("unsubscribing needs no answer")
	testTopic(s, "conf-a", 4, "b1")
	d.quiet("a change of a config the stream unsubscribed from")
}

func TestUnsubscribedListenerIsNotPushed(t *testing.T) {
	s := demoStack(t)
	testTopic(s, "conf-a", 6, "b1")
	d := openDelta(t, s.addr, "envoy-y", "conf-a")
	d.subscribe(translate.ListenerType, "other-listener")
	r := d.next()
	expect(t, r, translate.ListenerType, nil, []string{"other-listener"})
	d.ack(r)
	testTopic(s, "conf-a", 4, "b1")
	d.quiet("the rocketmq listener was never subscribed to")
}

func TestRouteByNameGrowsTheWildcardClusters(t *testing.T) {
	s := demoStack(t)
	testTopic(s, "conf-a", 6, "b1")
	cluster := clusterOf(t, s, "conf-a")
	d := openDelta(t, s.addr, "mixed-1")
	d.subscribe(translate.ClusterType, "*")
	d.quiet("nothing in the view yet")
	d.subscribe(translate.RouteType, "conf-a")
	got := map[string][]string{}
	for len(got) < 2 {
		r := d.next()
		got[r.TypeUrl] = names(r)
	}
	if !slices.Equal(got[translate.ClusterType], []string{cluster}) {
		t.Fatalf("wildcard CDS: %v, want [%s]", got[translate.ClusterType], cluster)
	}
}

func TestDroppedWildcardRemovesRetainedClusters(t *testing.T) {
	s := demoStack(t)
	testTopic(s, "conf-drop", 6, "b1")
	old := clusterOf(t, s, "conf-drop")
	d := openDelta(t, s.addr, "envoy-drop", "conf-drop")
	d.subscribe(translate.ClusterType, "*")
	d.ack(d.next())
	testTopic(s, "conf-drop", 6, "b1", "b2")
	moved := clusterOf(t, s, "conf-drop")
	r := d.next()
	expect(t, r, translate.ClusterType, []string{moved}, nil)
	d.ack(r)
	d.send(&discovery.DeltaDiscoveryRequest{TypeUrl: translate.ClusterType, ResponseNonce: r.Nonce, ResourceNamesUnsubscribe: []string{"*"}})
	if got := sorted(d.next().RemovedResources); !slices.Equal(got, sorted([]string{old, moved})) {
		t.Fatalf("removed %v, want both", got)
	}
}
