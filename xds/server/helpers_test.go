package server

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	gcpserver "github.com/envoyproxy/go-control-plane/pkg/server/v3"

	"github.com/rocketpilot/rocketpilot/remoting"
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
	table, h := routing.NewTable(), &hooks{}
	c, addr := serveCache(tb, table, copts, Options{}, func(c *cache.Cache) gcpserver.Callbacks { return hookedCallbacks{c, h} })
	return &stack{table: table, cache: c, addr: addr}, h
}

// applyAndWait writes updates to the table as the "test" source and waits for the cache to apply them (it applies
// the table's changes asynchronously).
func applyAndWait(s *stack, updates ...routing.Update) error {
	v := s.table.Apply("test", updates...)
	ctx, cancel := context.WithTimeout(context.Background(), answerWithin)
	defer cancel()
	if err := s.cache.WaitVersion(ctx, v); err != nil {
		return fmt.Errorf("the cache did not apply version %d: %w", v, err)
	}
	return nil
}
