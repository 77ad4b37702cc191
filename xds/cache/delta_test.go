package cache

import (
	"slices"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	gcpcache "github.com/envoyproxy/go-control-plane/pkg/cache/v3"

	"github.com/rocketpilot/rocketpilot/routing"
	"github.com/rocketpilot/rocketpilot/xds/translate"
)

// TestDeltaAnswerClassifiesEachName: respondDelta's steps, without a server. A present name is sent; an explicit
// name that does not exist is answered in removed_resources once, and again only when subscribed again; a name
// the client holds at its version is not sent again; a request that changes nothing waits; a name that
// disappears is removed.
func TestDeltaAnswerClassifiesEachName(t *testing.T) {
	c, tab := newTestCache(t)
	changes := tab.Subscribe()
	ch := open(t, c, 1, &corev3.Node{Id: "n1"}, translate.RouteType, "a", "nope")
	expectDelta(t, recvNow(t, ch), []string{"a"}, []string{"nope"})

	subscribeDelta(t, c, 1, ch, "b")
	expectDelta(t, recvNow(t, ch), []string{"b"}, nil)
	subscribeDelta(t, c, 1, ch, "nope")
	expectDelta(t, recvNow(t, ch), nil, []string{"nope"})

	rewatch(t, c, 1, translate.RouteType, ch)
	select {
	case r := <-ch:
		t.Fatalf("a request that changes nothing was answered: %v", r)
	default:
	}
	tab.Apply("ns", routing.Update{Topic: "a"})
	cs, _, _ := changes.TryNext()
	c.Apply(cs)
	expectDelta(t, recvNow(t, ch), nil, []string{"a"})
}

// subscribeDelta is a stream's next request of routes, subscribing to names: a new watch.
func subscribeDelta(t *testing.T, c *Cache, id int64, ch chan gcpcache.DeltaResponse, names ...string) {
	t.Helper()
	req := &discovery.DeltaDiscoveryRequest{TypeUrl: translate.RouteType, ResourceNamesSubscribe: names}
	c.OnStreamDeltaRequest(id, req)
	if _, err := c.CreateDeltaWatch(req, nil, ch); err != nil {
		t.Fatal(err)
	}
}

func expectDelta(t *testing.T, r *discovery.DeltaDiscoveryResponse, resources, removed []string) {
	t.Helper()
	var got []string
	for _, res := range r.GetResources() {
		got = append(got, res.GetName())
	}
	if !slices.Equal(got, resources) || !slices.Equal(r.GetRemovedResources(), removed) {
		t.Fatalf("resources %v removed %v; want %v and %v", got, r.GetRemovedResources(), resources, removed)
	}
}
