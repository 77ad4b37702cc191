// Package sidecar is a Go client of rocketpilot's xDS server for Go sidecars and mesh-native SDKs. It subscribes
// on demand, by delta xDS, to the routes of the topics it is asked about and to the endpoints of the clusters they
// name, keeps them in a local cache with watch callbacks, and rebuilds from them the TopicRouteData a RocketMQ SDK
// expects — the way Envoy's RocketMQ filter answers a route query (105).
//
// It reconnects with backoff and resubscribes with initial_resource_versions, so a control-plane restart costs
// no resends of what it holds. Responses it cannot decode are rejected (NACK) and the last good state is kept.
// Linking it registers gRPC's gzip codec, so the client accepts compressed responses.
package sidecar

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	rmqv3 "github.com/envoyproxy/go-control-plane/contrib/envoy/extensions/filters/network/rocketmq_proxy/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	_ "google.golang.org/grpc/encoding/gzip" // accept gzip-compressed responses (grpc-accept-encoding)
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/rocketpilot/rocketpilot/remoting"
	"github.com/rocketpilot/rocketpilot/xds/translate"
)

// ErrTopicNotFound is returned by Resolve when the control plane says the topic does not exist.
var ErrTopicNotFound = errors.New("topic not found")

// Options configure a Client.
type Options struct {
	NodeID string // the node id sent to the control plane ("rocketpilot-sidecar")
	// Metadata is the node's metadata: NAMESPACE and LABELS select it for TopicBindings with a pod selector, as
	// for an Istio-bootstrapped Envoy.
	Metadata    *structpb.Struct
	DialOptions []grpc.DialOption
	MinBackoff  time.Duration // (100ms)
	MaxBackoff  time.Duration // (5s)
	Logger      *slog.Logger
}

// Client holds one delta ADS stream to a control plane. Its methods are safe for concurrent use.
type Client struct {
	opts Options
	conn *grpc.ClientConn

	mu          sync.Mutex
	routes      map[string]*entry[*rmqv3.RouteConfiguration] // wanted topics
	endpoints   map[string]*entry[*endpointv3.ClusterLoadAssignment]
	watchers    map[string]map[*watcher]struct{}
	changed     chan struct{} // closed and replaced on every change
	send        func(*discovery.DeltaDiscoveryRequest) error
	subscribed  map[string]map[string]struct{} // per type, what the current stream is subscribed to
	dirty       map[string]map[string]struct{} // per type, names whose wanting changed since the last flush
	clusterRefs map[string]int                 // cluster → wanted routes naming it
	nacks       int
	streams     int
	connected   bool // a stream is open now

	// flushMu orders subscription changes: a diff and its sending happen as one step, so two callers can never
	// deliver their requests in the opposite order from the state they computed them on.
	flushMu sync.Mutex

	cancel context.CancelFunc
	done   chan struct{}
}

// entry is one resource the client wants: known once the server answered (present or removed).
type entry[T proto.Message] struct {
	known   bool
	value   T // zero when absent
	version string
}

type watcher struct {
	fn func(*remoting.TopicRouteData, error)
}

// Dial returns a client of the xDS server at addr and starts its stream in the background.
func Dial(addr string, opts Options) (*Client, error) {
	if opts.NodeID == "" {
		opts.NodeID = "rocketpilot-sidecar"
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 100 * time.Millisecond
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	dopts := opts.DialOptions
	if len(dopts) == 0 {
		dopts = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	conn, err := grpc.NewClient(addr, dopts...)
	if err != nil {
		return nil, fmt.Errorf("xds client for %s: %w", addr, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := newClient(opts)
	c.conn, c.cancel = conn, cancel
	go c.run(ctx)
	return c, nil
}

// newClient returns a client with its local cache and no stream.
func newClient(opts Options) *Client {
	return &Client{
		opts:        opts,
		routes:      map[string]*entry[*rmqv3.RouteConfiguration]{},
		endpoints:   map[string]*entry[*endpointv3.ClusterLoadAssignment]{},
		watchers:    map[string]map[*watcher]struct{}{},
		changed:     make(chan struct{}),
		subscribed:  map[string]map[string]struct{}{},
		dirty:       map[string]map[string]struct{}{},
		clusterRefs: map[string]int{},
		done:        make(chan struct{}),
	}
}

// Close ends the stream.
func (c *Client) Close() error {
	c.cancel()
	<-c.done
	return c.conn.Close()
}

// Resolve returns the topic's route as a RocketMQ SDK expects it, subscribing to it first if needed (it stays
// subscribed, and later calls answer from the local cache). A topic the control plane does not know fails with
// ErrTopicNotFound as soon as the server says so.
func (c *Client) Resolve(ctx context.Context, topic string) (*remoting.TopicRouteData, error) {
	var route *remoting.TopicRouteData
	var rerr error
	if err := c.await(ctx, topic, func() (ready bool) {
		route, rerr, ready = c.resolveLocked(topic)
		return ready
	}); err != nil {
		return nil, fmt.Errorf("resolve %q: %w", topic, err)
	}
	return route, rerr
}

// await subscribes to a topic and calls read under the lock until it reports ready, waiting for changes between
// calls, or until ctx ends.
func (c *Client) await(ctx context.Context, topic string, read func() (ready bool)) error {
	c.want(topic)
	for {
		c.mu.Lock()
		ready := read()
		changed := c.changed
		c.mu.Unlock()
		if ready {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}

// Route is a topic's route as the control plane serves it: the TopicRouteData a RocketMQ client reads, and the
// brokers each operation goes to, with the send weights of a weighted TopicRoute.
type Route struct {
	Topic   string
	Cluster string
	Data    *remoting.TopicRouteData
	// SendCluster is the cluster sends go to when it is not Cluster (a weighted TopicRoute's send cluster).
	SendCluster string
	// Send lists the writable masters, with a weighted TopicRoute's weights; Consume the brokers that carry each
	// readable group's queues.
	Send, Consume []translate.Target
	// Pop lists the consumer groups the control plane put in Pop mode for this topic, with their invisible time
	// (a TopicRoute's pop rule, served as the topic's pop routes); nil when none is.
	Pop map[string]translate.PopMode
}

// Route returns the topic's served route, subscribing to it like Resolve.
func (c *Client) Route(ctx context.Context, topic string) (*Route, error) {
	var out *Route
	var rerr error
	if err := c.await(ctx, topic, func() bool {
		data, err, ready := c.resolveLocked(topic)
		if ready && err == nil {
			rc := c.routes[topic].value
			cluster := defaultCluster(rc)
			cla := c.endpoints[cluster].value
			out = &Route{Topic: topic, Cluster: cluster, Data: data,
				Send: translate.Targets(cla, translate.SubsetWritable), Consume: translate.Targets(cla, translate.SubsetReadable),
				Pop: translate.PopGroups(rc)}
			if send := sendCluster(rc); send != "" && send != cluster { // no send route: sends use the cluster
				e := c.endpoints[send]
				if e == nil || !e.known {
					return false // the send cluster's endpoints are on their way
				}
				if e.value == nil {
					out, rerr = nil, fmt.Errorf("route of %q sends to cluster %q, which the control plane does not have", topic, send)
					return true
				}
				out.SendCluster, out.Send = send, translate.Targets(e.value, "")
			}
		}
		rerr = err
		return ready
	}); err != nil {
		return nil, fmt.Errorf("route of %q: %w", topic, err)
	}
	return out, rerr
}

// Watch calls fn with the topic's route whenever it or its endpoints change (and once when first resolved),
// until the returned function is called. fn runs on the client's receive goroutine: keep it short.
func (c *Client) Watch(topic string, fn func(*remoting.TopicRouteData, error)) (cancel func()) {
	w := &watcher{fn: fn}
	c.mu.Lock()
	if c.watchers[topic] == nil {
		c.watchers[topic] = map[*watcher]struct{}{}
	}
	c.watchers[topic][w] = struct{}{}
	route, err, ready := c.resolveLocked(topic)
	c.mu.Unlock()
	c.want(topic)
	if ready {
		fn(route, err)
	}
	return func() {
		c.mu.Lock()
		delete(c.watchers[topic], w)
		c.mu.Unlock()
	}
}

// Forget unsubscribes from a topic.
func (c *Client) Forget(topic string) {
	c.mu.Lock()
	if r := c.routes[topic]; r != nil {
		c.setRouteLocked(topic, r, nil, "")
		delete(c.routes, topic)
		c.markLocked(translate.RouteType, topic)
	}
	delete(c.watchers, topic)
	c.mu.Unlock()
	c.flush()
}

// Connected reports whether a stream to the control plane is open now.
func (c *Client) Connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.connected
}

// Stats reports how many streams the client has opened and how many responses it rejected.
func (c *Client) Stats() (streams, nacks int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.streams, c.nacks
}

func (c *Client) want(topic string) {
	c.mu.Lock()
	if c.routes[topic] == nil {
		c.routes[topic] = &entry[*rmqv3.RouteConfiguration]{}
		c.markLocked(translate.RouteType, topic)
	}
	c.mu.Unlock()
	c.flush()
}

// resolveLocked builds a topic's route from the local cache; ready is false while the answer is not known yet.
func (c *Client) resolveLocked(topic string) (route *remoting.TopicRouteData, err error, ready bool) {
	r := c.routes[topic]
	if r == nil || !r.known {
		return nil, nil, false
	}
	if r.value == nil {
		return nil, fmt.Errorf("%w: %q", ErrTopicNotFound, topic), true
	}
	cluster := defaultCluster(r.value)
	if cluster == "" {
		// A table without the catch-all route (a control plane whose route tables this client does not read):
		// an error rather than a wait for the endpoints of no cluster.
		return nil, fmt.Errorf("route of %q has no catch-all route this client recognises", topic), true
	}
	e := c.endpoints[cluster]
	if e == nil || !e.known {
		return nil, nil, false
	}
	if e.value == nil {
		return nil, fmt.Errorf("route of %q names cluster %q, which the control plane does not have", topic, cluster), true
	}
	return translate.ClientTopicRoute(e.value), nil, true
}

// defaultCluster is the cluster of a topic's catch-all route, the one Envoy's filter answers a route query (105)
// from.
func defaultCluster(rc *rmqv3.RouteConfiguration) string { return translate.DefaultCluster(rc) }

// routeClusters are the clusters a route names, its default cluster first: a weighted TopicRoute sends to a
// send cluster of its own.
func routeClusters(rc *rmqv3.RouteConfiguration) []string {
	var out []string
	if d := defaultCluster(rc); d != "" {
		out = append(out, d)
	}
	for _, r := range rc.GetRoutes() {
		if name := r.GetRoute().GetCluster(); name != "" && !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	return out
}

// routesTo reports whether a route names a cluster (without building routeClusters: this runs per watcher on
// every endpoint update).
func routesTo(rc *rmqv3.RouteConfiguration, cluster string) bool {
	for _, r := range rc.GetRoutes() {
		if r.GetRoute().GetCluster() == cluster {
			return true
		}
	}
	return false
}

// sendCluster is the cluster a route's sends go to.
func sendCluster(rc *rmqv3.RouteConfiguration) string { return translate.SendTarget(rc) }

// touchUsersLocked adds the watched topics routing to a cluster. Only watched topics need a callback, so the walk
// is over the watchers, not over every wanted topic.
func (c *Client) touchUsersLocked(touched map[string]struct{}, cluster string) {
	for t := range c.watchers {
		if r := c.routes[t]; r != nil && r.value != nil && routesTo(r.value, cluster) {
			touched[t] = struct{}{}
		}
	}
}

// markLocked notes that the client's wanting of a name changed; the next flush tells the server.
func (c *Client) markLocked(typeURL, name string) {
	d := c.dirty[typeURL]
	if d == nil {
		d = map[string]struct{}{}
		c.dirty[typeURL] = d
	}
	d[name] = struct{}{}
}

// setRouteLocked records a wanted topic's route (nil when absent) and keeps the endpoints of exactly the
// clusters the wanted routes name, by reference count: work proportional to the change.
func (c *Client) setRouteLocked(topic string, e *entry[*rmqv3.RouteConfiguration], value *rmqv3.RouteConfiguration, version string) {
	var old, cur []string
	if e.value != nil {
		old = routeClusters(e.value)
	}
	e.known, e.value, e.version = true, value, version
	if value != nil {
		cur = routeClusters(value)
	}
	for _, name := range cur {
		if slices.Contains(old, name) {
			continue
		}
		if c.clusterRefs[name]++; c.clusterRefs[name] == 1 {
			c.endpoints[name] = &entry[*endpointv3.ClusterLoadAssignment]{}
			c.markLocked(translate.EndpointType, name)
		}
	}
	for _, name := range old {
		if slices.Contains(cur, name) {
			continue
		}
		if c.clusterRefs[name]--; c.clusterRefs[name] <= 0 {
			delete(c.clusterRefs, name)
			delete(c.endpoints, name)
			c.markLocked(translate.EndpointType, name)
		}
	}
}

func (c *Client) broadcastLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// flush sends the subscription changes the current stream lacks.
func (c *Client) flush() {
	c.flushMu.Lock()
	defer c.flushMu.Unlock()
	c.mu.Lock()
	send := c.send
	var reqs []*discovery.DeltaDiscoveryRequest
	if send != nil {
		reqs = c.diffLocked()
	}
	c.mu.Unlock()
	for _, r := range reqs {
		if err := send(r); err != nil {
			return // the stream is broken; the next stream subscribes to everything
		}
	}
}

// diffLocked returns the requests that bring the stream's subscriptions to what the client wants, looking only
// at the names whose wanting changed, and records them as sent.
func (c *Client) diffLocked() []*discovery.DeltaDiscoveryRequest {
	var out []*discovery.DeltaDiscoveryRequest
	for _, typeURL := range []string{translate.RouteType, translate.EndpointType} {
		have := c.subscribed[typeURL]
		if have == nil {
			have = map[string]struct{}{}
			c.subscribed[typeURL] = have
		}
		req := &discovery.DeltaDiscoveryRequest{TypeUrl: typeURL}
		for n := range c.dirty[typeURL] {
			wanted := false
			if typeURL == translate.RouteType {
				wanted = c.routes[n] != nil
			} else {
				wanted = c.endpoints[n] != nil
			}
			_, subscribed := have[n]
			switch {
			case wanted && !subscribed:
				req.ResourceNamesSubscribe = append(req.ResourceNamesSubscribe, n)
				have[n] = struct{}{}
			case !wanted && subscribed:
				req.ResourceNamesUnsubscribe = append(req.ResourceNamesUnsubscribe, n)
				delete(have, n)
			}
		}
		delete(c.dirty, typeURL)
		if len(req.ResourceNamesSubscribe)+len(req.ResourceNamesUnsubscribe) > 0 {
			slices.Sort(req.ResourceNamesSubscribe)
			slices.Sort(req.ResourceNamesUnsubscribe)
			out = append(out, req)
		}
	}
	return out
}

// run keeps a stream open, reconnecting with backoff until Close.
func (c *Client) run(ctx context.Context) {
	defer close(c.done)
	backoff := c.opts.MinBackoff
	for ctx.Err() == nil {
		start := time.Now()
		err := c.stream(ctx)
		c.mu.Lock()
		c.connected = false
		c.mu.Unlock()
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > 10*time.Second {
			backoff = c.opts.MinBackoff
		}
		c.opts.Logger.Warn("xDS stream ended; reconnecting", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, c.opts.MaxBackoff)
	}
}

func (c *Client) stream(ctx context.Context) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := discovery.NewAggregatedDiscoveryServiceClient(c.conn).DeltaAggregatedResources(sctx)
	if err != nil {
		return err
	}
	var sendMu sync.Mutex
	first := true
	send := func(r *discovery.DeltaDiscoveryRequest) error {
		sendMu.Lock()
		defer sendMu.Unlock()
		if first {
			r.Node = &corev3.Node{Id: c.opts.NodeID, UserAgentName: "rocketpilot-sidecar", Metadata: c.opts.Metadata}
			first = false
		}
		return st.Send(r)
	}
	// A new stream subscribes to everything wanted, telling the server which versions the client holds; no other
	// subscription change may overtake these first requests.
	c.flushMu.Lock()
	c.mu.Lock()
	c.streams++
	c.connected = true
	c.subscribed = map[string]map[string]struct{}{}
	for n := range c.routes { // a new stream subscribes to everything wanted
		c.markLocked(translate.RouteType, n)
	}
	for n := range c.endpoints {
		c.markLocked(translate.EndpointType, n)
	}
	initial := c.diffLocked()
	for _, r := range initial {
		r.InitialResourceVersions = c.versionsLocked(r.TypeUrl)
	}
	c.send = send
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.send = nil
		c.mu.Unlock()
	}()
	for _, r := range initial {
		if err := send(r); err != nil {
			c.flushMu.Unlock()
			return err
		}
	}
	c.flushMu.Unlock()
	c.flush() // anything wanted while the stream was opening
	for {
		resp, err := st.Recv()
		if err != nil {
			return err
		}
		ack := &discovery.DeltaDiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce()}
		if err := c.apply(resp); err != nil {
			c.mu.Lock()
			c.nacks++
			c.mu.Unlock()
			c.opts.Logger.Warn("rejecting xDS response", "type", resp.GetTypeUrl(), "err", err)
			ack.ErrorDetail = &status.Status{Code: int32(codes.InvalidArgument), Message: err.Error()}
		}
		if err := send(ack); err != nil {
			return err
		}
		c.flush()
	}
}

func (c *Client) versionsLocked(typeURL string) map[string]string {
	out := map[string]string{}
	if typeURL == translate.RouteType {
		for n, e := range c.routes {
			if e.value != nil {
				out[n] = e.version
			}
		}
	} else {
		for n, e := range c.endpoints {
			if e.value != nil {
				out[n] = e.version
			}
		}
	}
	return out
}

// apply decodes a whole response first and applies it only if every resource decodes: a bad response changes
// nothing.
func (c *Client) apply(resp *discovery.DeltaDiscoveryResponse) error {
	type decoded struct {
		name, version string
		msg           proto.Message
	}
	var items []decoded
	for _, r := range resp.GetResources() {
		var m proto.Message
		switch resp.GetTypeUrl() {
		case translate.RouteType:
			m = &rmqv3.RouteConfiguration{}
		case translate.EndpointType:
			m = &endpointv3.ClusterLoadAssignment{}
		default:
			return fmt.Errorf("unexpected type %q", resp.GetTypeUrl())
		}
		if r.GetResource().GetTypeUrl() != resp.GetTypeUrl() {
			return fmt.Errorf("resource %q has type %q in a %q response", r.GetName(), r.GetResource().GetTypeUrl(), resp.GetTypeUrl())
		}
		if err := proto.Unmarshal(r.GetResource().GetValue(), m); err != nil {
			return fmt.Errorf("resource %q: %w", r.GetName(), err)
		}
		if v, ok := m.(interface{ ValidateAll() error }); ok {
			if err := v.ValidateAll(); err != nil {
				return fmt.Errorf("resource %q: %w", r.GetName(), err)
			}
		}
		items = append(items, decoded{r.GetName(), r.GetVersion(), m})
	}
	c.mu.Lock()
	touched := map[string]struct{}{}
	for _, it := range items {
		switch m := it.msg.(type) {
		case *rmqv3.RouteConfiguration:
			if e := c.routes[it.name]; e != nil {
				c.setRouteLocked(it.name, e, m, it.version)
				touched[it.name] = struct{}{}
			}
		case *endpointv3.ClusterLoadAssignment:
			if e := c.endpoints[it.name]; e != nil {
				e.known, e.value, e.version = true, m, it.version
				c.touchUsersLocked(touched, it.name)
			}
		}
	}
	for _, name := range resp.GetRemovedResources() {
		if resp.GetTypeUrl() == translate.RouteType {
			if e := c.routes[name]; e != nil {
				c.setRouteLocked(name, e, nil, "")
				touched[name] = struct{}{}
			}
		} else if e := c.endpoints[name]; e != nil {
			if e.value != nil {
				// The client only holds endpoints of clusters its routes name, so a route still names this one:
				// its update is on the way. Keep the last good endpoints rather than fail resolution meanwhile.
				continue
			}
			e.known, e.value, e.version = true, nil, ""
			c.touchUsersLocked(touched, name)
		}
	}
	c.broadcastLocked()
	type call struct {
		fn    func(*remoting.TopicRouteData, error)
		route *remoting.TopicRouteData
		err   error
	}
	var calls []call
	for t := range touched {
		route, err, ready := c.resolveLocked(t)
		if !ready {
			continue
		}
		for w := range c.watchers[t] {
			calls = append(calls, call{w.fn, route, err})
		}
	}
	c.mu.Unlock()
	for _, cl := range calls {
		cl.fn(cl.route, cl.err)
	}
	return nil
}
