package cache

import (
	"context"
	"testing"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"

	"github.com/rocketpilot/rocketpilot/routing"
	"github.com/rocketpilot/rocketpilot/xds/translate"
)

// TestStreamsChangedAndTotals: StreamsChanged fires on each kind of stream event (open, request, response, NACK,
// close) and not without one; Totals counts the responses and NACKs.
func TestStreamsChangedAndTotals(t *testing.T) {
	c, err := New(routing.NewTable(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	fired := func(ch <-chan struct{}) bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	step := func(what string, event func()) {
		t.Helper()
		ch := c.StreamsChanged()
		if fired(ch) {
			t.Fatalf("before %s: fired without an event", what)
		}
		event()
		if !fired(ch) {
			t.Fatalf("%s did not fire StreamsChanged", what)
		}
	}
	step("a stream opening", func() {
		if err := c.OnDeltaStreamOpen(context.Background(), 1, translate.RouteType); err != nil {
			t.Fatal(err)
		}
	})
	step("a request", func() {
		_ = c.OnStreamDeltaRequest(1, &discovery.DeltaDiscoveryRequest{TypeUrl: translate.RouteType, ResourceNamesSubscribe: []string{"T"}})
	})
	step("a response", func() {
		c.OnStreamDeltaResponse(1, nil, &discovery.DeltaDiscoveryResponse{TypeUrl: translate.RouteType, Nonce: "n1", SystemVersionInfo: "1"})
	})
	step("a NACK", func() {
		_ = c.OnStreamDeltaRequest(1, &discovery.DeltaDiscoveryRequest{TypeUrl: translate.RouteType, ResponseNonce: "n1",
			ErrorDetail: &statuspb.Status{Message: "no"}})
	})
	if pushes, nacks := c.Totals(); pushes != 1 || nacks != 1 {
		t.Errorf("Totals() = %d pushes, %d NACKs; want 1 and 1", pushes, nacks)
	}
	step("a stream closing", func() { c.OnDeltaStreamClosed(1, nil) })
}
