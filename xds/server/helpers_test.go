package server

import (
	"context"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	endpointservice "github.com/envoyproxy/go-control-plane/envoy/service/endpoint/v3"
	gcpserver "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"

	"github.com/rocketpilot/rocketpilot/nameserver/remoting"
	"github.com/rocketpilot/rocketpilot/routing"
	"github.com/rocketpilot/rocketpilot/xds/cache"
)

func sortRoute(r *remoting.TopicRouteData) {
	slices.SortFunc(r.QueueDatas, func(a, b remoting.QueueData) int { return strings.Compare(a.BrokerName, b.BrokerName) })
	slices.SortFunc(r.BrokerDatas, func(a, b remoting.BrokerData) int { return strings.Compare(a.BrokerName, b.BrokerName) })
}

// hooks run inside go-control-plane's stream goroutine, before the cache's callback sees a request: a test arms one
// to make something happen at a precise point of the server's handling (after it sent every response queued so
// far, before the cache computes the request's watch), which no client can time from outside.
type hooks struct {
	mu           sync.Mutex
	deltaRequest func(*discovery.DeltaDiscoveryRequest) // runs once, on the next delta request it is armed for
}

// beforeNextDeltaRequest arms fn for the next delta request of typeURL; the returned channel closes once it ran.
func (h *hooks) beforeNextDeltaRequest(typeURL string, fn func()) <-chan struct{} {
	done := make(chan struct{})
	h.mu.Lock()
	defer h.mu.Unlock()
	h.deltaRequest = func(req *discovery.DeltaDiscoveryRequest) {
		if req.GetTypeUrl() != typeURL {
			return
		}
		h.deltaRequest = nil
		fn()
		close(done)
	}
	return done
}

// hookedCallbacks are the cache's callbacks with the hooks in front.
type hookedCallbacks struct {
	*cache.Cache
	h *hooks
}

func (c hookedCallbacks) OnStreamDeltaRequest(id int64, req *discovery.DeltaDiscoveryRequest) error {
	c.h.mu.Lock()
	fn := c.h.deltaRequest
	if fn != nil {
		fn(req)
	}
	c.h.mu.Unlock()
	return c.Cache.OnStreamDeltaRequest(id, req)
}

// startModelStack is the control plane without NameServers (tests write the table themselves) behind
// go-control-plane's real gRPC server, with hooks in front of the cache's callbacks.
func startModelStack(tb testing.TB, copts cache.Options) (*stack, *hooks) {
	tb.Helper()
	table := routing.NewTable()
	c, err := cache.New(table, copts)
	if err != nil {
		tb.Fatal(err)
	}
	sub := table.Subscribe()
	ctx, cancel := context.WithCancel(context.Background())
	cdone := make(chan struct{})
	go func() { c.Run(ctx, sub, nil); close(cdone) }()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	h := &hooks{}
	g := grpc.NewServer()
	srv := gcpserver.NewServer(ctx, c, hookedCallbacks{c, h})
	discovery.RegisterAggregatedDiscoveryServiceServer(g, srv)
	clusterservice.RegisterClusterDiscoveryServiceServer(g, srv)
	endpointservice.RegisterEndpointDiscoveryServiceServer(g, srv)
	sdone := make(chan struct{})
	go func() { Serve(ctx, g, lis, time.Second); close(sdone) }()
	tb.Cleanup(func() {
		cancel()
		sub.Close()
		<-sdone
		<-cdone
	})
	return &stack{table: table, cache: c, addr: lis.Addr().String()}, h
}
