package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	gcpserver "github.com/envoyproxy/go-control-plane/pkg/server/v3"

	"github.com/rocketpilot/rocketpilot/routing"
	"github.com/rocketpilot/rocketpilot/xds/cache"
)

// StackConfig is what a Stack is built from. Zero values take the defaults in parentheses.
type StackConfig struct {
	// Table is the routing model the sources feed (a new, empty one).
	Table *routing.Table
	// Cache configures the xDS cache.
	Cache cache.Options
	// Server configures the gRPC server (TLS, compression, admission, wire statistics).
	Server Options
	// Listener is the xDS listener, opened by the caller (one on Addr).
	Listener net.Listener
	// Addr is where the xDS listener is opened when Listener is nil ("127.0.0.1:0").
	Addr string
	// CoalesceWindow: changes of the table within it are pushed together (none: each change at once).
	CoalesceWindow time.Duration
	// Grace is how long open streams may take to close when the stack stops (at once).
	Grace time.Duration

	// callbacks, when set, is what go-control-plane's server calls instead of the cache (a test's hooks in
	// front of it).
	callbacks func(*cache.Cache) gcpserver.Callbacks
}

// Stack is the serving half of the control plane, the one place that builds it: the table → the xDS cache
// (following the table through a subscription, with the coalescing window) → go-control-plane's gRPC server, and
// the change log the admin API shows. The control-plane assembly (package controlplane) puts the sources in front
// of it and the admin and metrics listeners beside it; the tests' harness starts it alone.
//
// Its life: NewStack opens the xDS listener and builds the table and the cache; Start has the cache follow the
// table; Serve, once the sources have synced, serves xDS as soon as the cache holds everything the table knows (a
// restarted control plane never serves an empty world), and closes Ready; Stop ends everything and waits.
type Stack struct {
	cfg     StackConfig
	table   *routing.Table
	cache   *cache.Cache
	changes *ChangeLog
	lis     net.Listener

	ctx     context.Context // set by Start
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	started bool
	serving bool
	ready   chan struct{}
	errc    chan error
	stop    sync.Once
}

// NewStack builds the table, the cache and the change log, and opens the xDS listener (so that a port clash fails
// at once, not after a long initial sync). Nothing runs until Start.
func NewStack(cfg StackConfig) (*Stack, error) {
	table := cfg.Table
	if table == nil {
		table = routing.NewTable()
	}
	c, err := cache.New(table, cfg.Cache)
	if err != nil {
		return nil, err
	}
	lis := cfg.Listener
	if lis == nil {
		addr := cfg.Addr
		if addr == "" {
			addr = "127.0.0.1:0"
		}
		if lis, err = net.Listen("tcp", addr); err != nil {
			return nil, fmt.Errorf("xDS listener: %w", err)
		}
	}
	return &Stack{cfg: cfg, table: table, cache: c, changes: &ChangeLog{}, lis: lis,
		ready: make(chan struct{}), errc: make(chan error, 1)}, nil
}

// Table is the routing model the sources feed.
func (s *Stack) Table() *routing.Table { return s.table }

// Cache is the xDS cache (also the controllers' feed of NACKs: it is a controllers.RejectionFeed).
func (s *Stack) Cache() *cache.Cache { return s.cache }

// Changes is the log of the table's changes since Start, which the admin API shows.
func (s *Stack) Changes() *ChangeLog { return s.changes }

// Addr is the xDS listener's address.
func (s *Stack) Addr() string { return s.lis.Addr().String() }

// Start has the change log and the cache follow the table until ctx ends or Stop is called; it returns at once.
// What the cache serves is gated by Serve, not what it knows.
func (s *Stack) Start(ctx context.Context) {
	if s.started {
		panic("server: Stack.Start called twice")
	}
	s.started = true
	s.ctx, s.cancel = context.WithCancel(ctx)
	ctx = s.ctx
	s.wg.Go(func() { s.changes.Follow(ctx, s.table) })
	sub := s.table.Subscribe()
	var wait func(context.Context)
	if window := s.cfg.CoalesceWindow; window > 0 {
		wait = func(ctx context.Context) {
			t := time.NewTimer(window)
			defer t.Stop()
			select {
			case <-ctx.Done():
			case <-t.C:
			}
		}
	}
	s.wg.Go(func() { s.cache.Run(ctx, sub, wait) })
	s.wg.Go(func() {
		<-ctx.Done()
		sub.Close()
	})
}

// Serve serves xDS on the listener once the cache holds the table's version of now, and until the stack stops;
// it returns at once. Ready is closed when streams are served; Err reports the server's failure. Call it after
// Start, once the sources have synced.
func (s *Stack) Serve() {
	if !s.started || s.serving {
		panic("server: Stack.Serve before Start, or twice")
	}
	s.serving = true
	ctx := s.ctx
	version := s.table.Version()
	s.wg.Go(func() {
		if err := s.cache.WaitVersion(ctx, version); err != nil {
			return // stopped first
		}
		var cb gcpserver.Callbacks = s.cache
		if s.cfg.callbacks != nil {
			cb = s.cfg.callbacks(s.cache)
		}
		if id := s.cfg.Server.Identity; id != nil {
			cb = id.callbacks(cb)
		}
		g := newGRPC(ctx, s.cache, cb, s.cfg.Server)
		close(s.ready)
		if err := serveGRPC(ctx, g, s.lis, s.cfg.Grace); err != nil {
			s.errc <- err
		}
	})
}

// StartServing is Start and Serve for a table that needs no first sync (a test's, a tool's): it returns once
// streams are served, with the server's error, or with ctx's when it ends first. The stack runs until Stop.
func (s *Stack) StartServing(ctx context.Context) error {
	s.Start(context.WithoutCancel(ctx))
	s.Serve()
	return s.WaitReady(ctx)
}

// Ready is closed once xDS is served.
func (s *Stack) Ready() <-chan struct{} { return s.ready }

// Serving reports whether xDS is served.
func (s *Stack) Serving() bool {
	select {
	case <-s.ready:
		return true
	default:
		return false
	}
}

// Err receives the gRPC server's error if it stops serving before the stack is stopped.
func (s *Stack) Err() <-chan error { return s.errc }

// Stop ends everything Start and Serve started, closes the listener and waits.
func (s *Stack) Stop() {
	s.stop.Do(func() {
		if s.cancel != nil {
			s.cancel()
		}
		s.wg.Wait()
		s.lis.Close()
	})
}

// Admin is the admin API over this stack: its table, cache and change log, ready once xDS is served. The caller
// adds what it knows besides (version, sources, resources) before serving its Handler.
func (s *Stack) Admin() *Admin {
	return &Admin{Table: s.table, Cache: s.cache, Changes: s.changes, Ready: s.Serving}
}

// ErrNotReady is returned by WaitReady when ctx ends first.
var ErrNotReady = errors.New("server: not serving yet")

// WaitReady waits until xDS is served, the server fails, or ctx ends.
func (s *Stack) WaitReady(ctx context.Context) error {
	select {
	case <-s.ready:
		return nil
	case err := <-s.errc:
		s.errc <- err
		return err
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrNotReady, ctx.Err())
	}
}
