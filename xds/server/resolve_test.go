package server

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/rocketpilot/rocketpilot/nameserver/client"
	"github.com/rocketpilot/rocketpilot/nameserver/embedded"
	"github.com/rocketpilot/rocketpilot/remoting"
	"github.com/rocketpilot/rocketpilot/xds/sidecar"
)

// TestResolvedRoutesEqualNameServer resolves every demo topic through xDS with the Go sidecar client and checks the
// TopicRouteData rebuilt from the served endpoints (Envoy's algorithm) equals what the NameServer answers to 105.
func TestResolvedRoutesEqualNameServer(t *testing.T) {
	s := startStack(t, embedded.LoadDemo)
	sc, err := sidecar.Dial(s.addr, sidecar.Options{NodeID: "test-sidecar"})
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	nc := client.New(s.ns.Addr(), client.Options{})
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	topics := s.ns.Topics()
	if len(topics) < 100 {
		t.Fatalf("demo has %d topics", len(topics))
	}
	for _, topic := range topics {
		want, _, err := nc.GetRouteInfo(ctx, topic)
		if err != nil {
			t.Fatalf("105 %s: %v", topic, err)
		}
		got, err := sc.Resolve(ctx, topic)
		if err != nil {
			t.Fatalf("resolve %s: %v", topic, err)
		}
		normalize(want)
		normalize(got)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: served route differs from the NameServer's\n got %+v\nwant %+v", topic, got, want)
		}
	}
	if _, err := sc.Resolve(ctx, "no-such-topic"); !errors.Is(err, sidecar.ErrTopicNotFound) {
		t.Fatalf("unknown topic: err = %v", err)
	}
}

// normalize sorts a route's lists and clears what the xDS view does not carry (filter servers are unused).
func normalize(r *remoting.TopicRouteData) {
	r.FilterServerTable = nil
	sortRoute(r)
}
