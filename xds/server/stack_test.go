package server

import (
	"context"
	"testing"
	"time"

	gcpserver "github.com/envoyproxy/go-control-plane/pkg/server/v3"

	"github.com/rocketpilot/rocketpilot/internal/embeddedtest"
	"github.com/rocketpilot/rocketpilot/nameserver/client"
	"github.com/rocketpilot/rocketpilot/nameserver/embedded"
	"github.com/rocketpilot/rocketpilot/nameserver/watcher"
	"github.com/rocketpilot/rocketpilot/routing"
	"github.com/rocketpilot/rocketpilot/xds/cache"
)

// stack is the whole control plane in process: embedded NameServer → watcher → table → cache → gRPC server.
type stack struct {
	ns      *embedded.NameServer
	table   *routing.Table
	watcher *watcher.Watcher
	cache   *cache.Cache
	addr    string
}

func startStack(t testing.TB, load func(*embedded.NameServer)) *stack {
	t.Helper()
	return startStackWith(t, load, Options{})
}

// startStackWith is startStack with the gRPC server's options, and optionally the cache's.
func startStackWith(t testing.TB, load func(*embedded.NameServer), opts Options, copts ...cache.Options) *stack {
	t.Helper()
	ns := embeddedtest.Start(t, load)
	table := routing.NewTable()
	w, err := watcher.New(table, watcher.Options{
		Addrs:          []string{ns.Addr()},
		Interval:       200 * time.Millisecond,
		BrokerInterval: 100 * time.Millisecond,
		RateLimit:      1e6,
		RemoveAfter:    time.Nanosecond, // tests delete topics on purpose
		Concurrency:    32,
		Client:         client.Options{RequestTimeout: 2 * time.Second, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	wdone := make(chan struct{})
	go func() { w.Run(ctx); close(wdone) }()
	select {
	case <-w.Synced():
	case <-time.After(20 * time.Second):
		t.Fatal("watcher never synced")
	}
	var co cache.Options
	if len(copts) > 0 {
		co = copts[0]
	}
	t.Cleanup(func() { cancel(); <-wdone }) // after the server's cleanup, which serveCache registers later
	c, addr := serveCache(t, table, co, opts, nil)
	return &stack{ns: ns, table: table, watcher: w, cache: c, addr: addr}
}

// serveCache serves a Stack over table on loopback until the test ends, and returns its cache and address.
// callbacks, when not nil, gives what the server calls instead of the cache's own callbacks (hooks in front of it).
func serveCache(tb testing.TB, table *routing.Table, copts cache.Options, opts Options, callbacks func(*cache.Cache) gcpserver.Callbacks) (*cache.Cache, string) {
	tb.Helper()
	s, err := NewStack(StackConfig{Table: table, Cache: copts, Server: opts, Grace: time.Second, callbacks: callbacks})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Stop)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.StartServing(ctx); err != nil {
		tb.Fatal(err)
	}
	return s.Cache(), s.Addr()
}
