package dataplane

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rocketpilot/rocketpilot/remoting"
	"github.com/rocketpilot/rocketpilot/xds/sidecar"
)

// Routes is where the proxy reads a topic's served route: *sidecar.Client, subscribed on first use.
type Routes interface {
	Route(ctx context.Context, topic string) (*sidecar.Route, error)
	// Watch calls fn whenever the topic's route or its endpoints change, until cancel.
	Watch(topic string, fn func(*remoting.TopicRouteData, error)) (cancel func())
}

// Options configure a Proxy. Zero values take the defaults in parentheses.
type Options struct {
	// Listen is the NameServer address the application is given ("127.0.0.1:9876").
	Listen string
	// BrokerHost is the host of the ports the proxy opens, one per broker group ("127.0.0.1").
	BrokerHost string
	// Routes are the served routes.
	Routes Routes
	// RouteTimeout bounds the wait for a topic's route the proxy does not hold yet (3s).
	RouteTimeout time.Duration
	// DialTimeout bounds a connection to a broker (3s).
	DialTimeout time.Duration
	// MaxFrameSize bounds a frame from either side (remoting.DefaultMaxFrameSize): a larger one closes its
	// connection.
	MaxFrameSize int
	// RouteIdle is how long a topic's route is kept, watched and subscribed to after the last request that used it
	// (10m).
	RouteIdle time.Duration
	// OrderedPullWait is how long a pull of an ordered queue in Pop mode is held, while the application has not
	// committed the messages last handed out of that queue, before it is answered that nothing is new (100ms). The
	// broker hands the queue's next messages out only once those are acked, and the commit that acks them comes
	// with the application's next pull: a short wait, not the broker's long poll, keeps that pull coming.
	OrderedPullWait time.Duration
	// WriteTimeout closes a connection, to the application or a broker, that accepts nothing for this long: a
	// peer that stopped reading holds none of the proxy's goroutines for longer (10s).
	WriteTimeout time.Duration
	Logger       *slog.Logger
}

// Proxy is the sidecar's proxy. Its methods are safe for concurrent use.
type Proxy struct {
	opts    Options
	log     *slog.Logger
	metrics *Metrics

	mu      sync.Mutex
	ns      net.Listener
	groups  map[string]*group // broker group name → its port
	routes  map[string]*cachedRoute
	watches map[string]func() // topic → cancels its watch (nil while being set up)
	stop    chan struct{}     // closed by Close: ends evictLoop

	popMu     sync.Mutex
	popStats  map[string]*PopStats    // Pop mode counts by consumer group
	noBatch   map[string]bool         // broker groups that answered BATCH_ACK_MESSAGE "not supported"
	consumers map[string]consumerInfo // consumer groups by the last heartbeat on any connection

	inflight atomic.Int64 // requests forwarded and not yet answered
	draining atomic.Bool
	conns    map[io.Closer]struct{}
	closed   bool
	wg       sync.WaitGroup
	started  bool
}

// group is one broker group as the application sees it: a port of the proxy, and the group's brokers as the
// control plane last served them.
type group struct {
	name   string
	ln     net.Listener
	master string // host:port, "" when no served route names one
	slave  string // the lowest-id slave, "" when none: where reads go while the group has no master
}

// New returns a proxy; it listens once started.
func New(opts Options) *Proxy {
	if opts.Listen == "" {
		opts.Listen = "127.0.0.1:9876"
	}
	if opts.BrokerHost == "" {
		opts.BrokerHost = "127.0.0.1"
	}
	if opts.RouteTimeout <= 0 {
		opts.RouteTimeout = 3 * time.Second
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = 3 * time.Second
	}
	if opts.MaxFrameSize <= 0 {
		opts.MaxFrameSize = remoting.DefaultMaxFrameSize
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 10 * time.Second
	}
	if opts.OrderedPullWait <= 0 {
		opts.OrderedPullWait = 100 * time.Millisecond
	}
	if opts.RouteIdle <= 0 {
		opts.RouteIdle = 10 * time.Minute
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Proxy{opts: opts, log: log, groups: map[string]*group{}, conns: map[io.Closer]struct{}{},
		routes: map[string]*cachedRoute{}, watches: map[string]func(){}, stop: make(chan struct{}),
		popStats: map[string]*PopStats{}}
	p.metrics = newMetrics(p)
	return p
}

// Start listens on the NameServer address.
func (p *Proxy) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.started {
		return errors.New("dataplane: already started or closed")
	}
	ln, err := net.Listen("tcp", p.opts.Listen)
	if err != nil {
		return fmt.Errorf("dataplane: listen on %s: %w", p.opts.Listen, err)
	}
	p.ns, p.started = ln, true
	p.wg.Add(2)
	go p.accept(ln, p.serveNameServer)
	go p.evictLoop(p.stop)
	p.log.Info("sidecar listening for the application", "namesrv", ln.Addr().String())
	return nil
}

// Metrics are the proxy's collectors.
func (p *Proxy) Metrics() *Metrics { return p.metrics }

// Addr is the NameServer address the proxy listens on.
func (p *Proxy) Addr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ns == nil {
		return ""
	}
	return p.ns.Addr().String()
}

// GroupPort is a broker group and the proxy's port for it.
type GroupPort struct {
	Name, Addr string
}

// Groups lists the broker groups routes named so far (a group's port is never closed before the proxy), sorted
// by name, each with the proxy's port for it.
func (p *Proxy) Groups() []GroupPort {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]GroupPort, 0, len(p.groups))
	for name, g := range p.groups {
		out = append(out, GroupPort{Name: name, Addr: g.ln.Addr().String()})
	}
	slices.SortFunc(out, func(a, b GroupPort) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// RoutesHeld is how many topics' served routes the proxy holds (not counting topics the control plane said do
// not exist).
func (p *Proxy) RoutesHeld() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, c := range p.routes {
		if c.r != nil {
			n++
		}
	}
	return n
}

// GroupAddr is the proxy's port for a broker group, "" before a route named the group.
func (p *Proxy) GroupAddr(name string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if g := p.groups[name]; g != nil {
		return g.ln.Addr().String()
	}
	return ""
}

// Drain stops accepting connections (the NameServer port and every group port) and waits until the requests in
// flight have been answered or ctx ends; open application connections keep working meanwhile. Close ends them.
func (p *Proxy) Drain(ctx context.Context) error {
	p.draining.Store(true)
	p.mu.Lock()
	if p.ns != nil {
		p.ns.Close()
	}
	for _, g := range p.groups {
		g.ln.Close()
	}
	p.mu.Unlock()
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for p.inflight.Load() > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("dataplane: %d requests still in flight: %w", p.inflight.Load(), ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// Draining reports whether Drain was called.
func (p *Proxy) Draining() bool { return p.draining.Load() }

// Close stops listening and closes every connection.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	if p.ns != nil {
		p.ns.Close()
	}
	for _, g := range p.groups {
		g.ln.Close()
	}
	for c := range p.conns {
		c.Close()
	}
	var cancels []func()
	for _, cancel := range p.watches {
		if cancel != nil {
			cancels = append(cancels, cancel)
		}
	}
	clear(p.watches)
	close(p.stop)
	p.mu.Unlock()
	for _, cancel := range cancels {
		cancel()
	}
	p.wg.Wait()
	return nil
}

func (p *Proxy) accept(ln net.Listener, serve func(net.Conn)) {
	defer p.wg.Done()
	for {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			nc.Close()
			return
		}
		p.conns[nc] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go func() {
			defer p.wg.Done()
			defer p.forget(nc)
			serve(nc)
		}()
	}
}

func (p *Proxy) forget(c io.Closer) {
	c.Close()
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// learn records the groups of a served route: each gets its port (opened on first sight) and its master's address.
// It returns the route as the application must see it: every group at the proxy's port for it.
func (p *Proxy) learn(data *remoting.TopicRouteData) (*remoting.TopicRouteData, error) {
	out := *data
	out.BrokerDatas = make([]remoting.BrokerData, 0, len(data.BrokerDatas))
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, errors.New("dataplane: closed")
	}
	for _, bd := range data.BrokerDatas {
		g := p.groups[bd.BrokerName]
		if g == nil && p.draining.Load() {
			return nil, errors.New("dataplane: draining")
		}
		if g == nil {
			ln, err := net.Listen("tcp", net.JoinHostPort(p.opts.BrokerHost, "0"))
			if err != nil {
				return nil, fmt.Errorf("dataplane: a port for broker group %s: %w", bd.BrokerName, err)
			}
			g = &group{name: bd.BrokerName, ln: ln}
			p.groups[bd.BrokerName] = g
			p.wg.Add(1)
			go p.accept(ln, func(nc net.Conn) { p.serveClient(g.name, nc) })
			p.log.Info("broker group port", "group", g.name, "addr", ln.Addr().String())
		}
		g.master, g.slave = bd.BrokerAddrs[0], ""
		for id := int64(1); id < 64 && g.slave == ""; id++ { // broker ids are small: 1 is the usual first slave
			g.slave = bd.BrokerAddrs[id]
		}
		local := bd
		local.BrokerAddrs = map[int64]string{0: g.ln.Addr().String()}
		out.BrokerDatas = append(out.BrokerDatas, local)
	}
	out.FilterServerTable = map[string][]string{}
	return &out, nil
}

// master is a group's master address as last served, or "".
func (p *Proxy) master(name string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if g := p.groups[name]; g != nil {
		return g.master
	}
	return ""
}

// broker is where a group's requests other than sends go: its master, or while it has none (stopped, expired)
// its first slave, which serves pulls, Pops and offsets as a Java group's slave does for its consumers.
func (p *Proxy) broker(name string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if g := p.groups[name]; g != nil {
		if g.master != "" {
			return g.master
		}
		return g.slave
	}
	return ""
}

// cachedRoute is a topic's served route as the proxy last read it; a change of the route or its endpoints drops
// it (Watch), and it is read again at most routeTTL later in any case, so that a change to a send cluster's
// endpoints, which the topic's watch may not see, applies within that.
type cachedRoute struct {
	r        *sidecar.Route
	err      error
	expires  time.Time
	lastUsed time.Time
}

const routeTTL = time.Second

// route reads a topic's served route, from the proxy's cache when it holds a current one, else from the xDS
// client, waiting at most RouteTimeout for a topic it does not hold yet.
func (p *Proxy) route(topic string) (*sidecar.Route, error) {
	now := time.Now()
	p.mu.Lock()
	if c := p.routes[topic]; c != nil && now.Before(c.expires) {
		c.lastUsed = now
		p.mu.Unlock()
		return c.r, c.err
	}
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), p.opts.RouteTimeout)
	defer cancel()
	r, err := p.opts.Routes.Route(ctx, topic)
	if err == nil && r != nil && r.Data != nil {
		if _, lerr := p.learn(r.Data); lerr != nil {
			return nil, lerr
		}
	}
	if err != nil && !errors.Is(err, sidecar.ErrTopicNotFound) {
		return r, err // not known either way: nothing to keep
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return r, err
	}
	p.routes[topic] = &cachedRoute{r: r, err: err, expires: now.Add(routeTTL), lastUsed: now}
	_, watched := p.watches[topic]
	if !watched {
		p.watches[topic] = nil // claimed: a concurrent first lookup does not watch too
	}
	p.mu.Unlock()
	if !watched {
		// Watch reports the route once at once, which is the one just read: only later reports expire it.
		var armed atomic.Bool
		cancelWatch := p.opts.Routes.Watch(topic, func(data *remoting.TopicRouteData, err error) {
			if !armed.Load() {
				return
			}
			p.forgetRoute(topic)
			if err == nil && data != nil {
				_, _ = p.learn(data) // the groups' brokers move now, not at the next request that reads the route
			}
		})
		armed.Store(true)
		p.mu.Lock()
		if _, still := p.watches[topic]; p.closed || !still {
			p.mu.Unlock()
			cancelWatch()
		} else {
			p.watches[topic] = cancelWatch
			p.mu.Unlock()
		}
	}
	return r, err
}

// forgetter is implemented by an xDS client that can unsubscribe from a topic (*sidecar.Client).
type forgetter interface{ Forget(topic string) }

// evictIdle drops the routes no request used for RouteIdle: the cache, the watch and the xDS subscription, so a
// long-lived sidecar holds what its application uses now, not every topic it ever asked for.
func (p *Proxy) evictIdle(now time.Time) {
	var gone []string
	var cancels []func()
	p.mu.Lock()
	for topic, c := range p.routes {
		if now.Sub(c.lastUsed) >= p.opts.RouteIdle {
			gone = append(gone, topic)
			delete(p.routes, topic)
			if cancel := p.watches[topic]; cancel != nil {
				cancels = append(cancels, cancel)
			}
			delete(p.watches, topic)
		}
	}
	p.mu.Unlock()
	for _, cancel := range cancels {
		cancel()
	}
	if f, ok := p.opts.Routes.(forgetter); ok {
		for _, topic := range gone {
			f.Forget(topic)
		}
	}
}

func (p *Proxy) evictLoop(stop <-chan struct{}) {
	defer p.wg.Done()
	t := time.NewTicker(max(p.opts.RouteIdle/4, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			p.evictIdle(now)
		}
	}
}

// routeCached reports whether route would answer from the cache, without waiting.
func (p *Proxy) routeCached(topic string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.routes[topic]
	return c != nil && time.Now().Before(c.expires)
}

// forgetRoute expires a topic's cached route: the next request reads it again. The entry stays, marking the
// topic as watched.
func (p *Proxy) forgetRoute(topic string) {
	p.mu.Lock()
	if c := p.routes[topic]; c != nil {
		c.expires = time.Time{}
	}
	p.mu.Unlock()
}

// errorResponse is an answer the proxy gives itself, in the header serialization of the request.
func errorResponse(req *remoting.Command, code int32, remark string) *remoting.Command {
	resp := remoting.NewResponse(req, code, remark)
	resp.HeaderType = req.HeaderType
	return resp
}

func itoa(n int) string { return strconv.Itoa(n) }
