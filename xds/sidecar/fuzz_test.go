package sidecar

import (
	"testing"

	rmqv3 "github.com/envoyproxy/go-control-plane/contrib/envoy/extensions/filters/network/rocketmq_proxy/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/rocketpilot/rocketpilot/remoting"
	"github.com/rocketpilot/rocketpilot/routing"
	"github.com/rocketpilot/rocketpilot/xds/translate"
)

// FuzzApply feeds the client's response decoder arbitrary resource bytes: it must reject what does not decode or
// validate without changing its state, and never panic, and a resolved route must be buildable from whatever it
// accepted.
func FuzzApply(f *testing.F) {
	set := &routing.BrokerSet{Hash: "0123456789abcdef", Members: []routing.Member{{Cluster: "C", BrokerName: "b", Perm: 6,
		ReadQueueNums: 4, WriteQueueNums: 4, Addrs: []routing.BrokerAddr{{ID: 0, Addr: "10.0.0.1:10911"}}}}}
	route, _ := proto.Marshal(translate.TopicRoute(&routing.Topic{Name: "t", BrokerSet: set}))
	cla, _ := proto.Marshal(translate.LoadAssignment(set))
	f.Add(route, cla)
	f.Add([]byte{0x0a, 0x01, 't'}, []byte{0xff})
	f.Fuzz(func(t *testing.T, routeBytes, claBytes []byte) {
		c := newClient(Options{})
		c.routes["t"] = &entry[*rmqv3.RouteConfiguration]{}
		c.Watch("t", func(*remoting.TopicRouteData, error) {})
		routeErr := c.apply(&discovery.DeltaDiscoveryResponse{TypeUrl: translate.RouteType, Resources: []*discovery.Resource{
			{Name: "t", Version: "1", Resource: &anypb.Any{TypeUrl: translate.RouteType, Value: routeBytes}}}})
		if routeErr != nil && c.routes["t"].known {
			t.Fatal("a rejected response changed the client's state")
		}
		for name := range c.endpoints {
			c.apply(&discovery.DeltaDiscoveryResponse{TypeUrl: translate.EndpointType, Resources: []*discovery.Resource{
				{Name: name, Version: "1", Resource: &anypb.Any{TypeUrl: translate.EndpointType, Value: claBytes}}}})
		}
		c.mu.Lock()
		c.resolveLocked("t")
		c.mu.Unlock()
	})
}
