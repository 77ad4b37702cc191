package soak

import (
	"context"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	rmqv3 "github.com/envoyproxy/go-control-plane/contrib/envoy/extensions/filters/network/rocketmq_proxy/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	_ "google.golang.org/grpc/encoding/gzip" // accept gzip, as the Go sidecar client does
	"google.golang.org/protobuf/proto"

	"github.com/rocketpilot/rocketpilot/xds/translate"
)

// defaultCluster is the cluster of a route's catch-all, the last route, as the Go sidecar client reads it.
func defaultCluster(rc *rmqv3.RouteConfiguration) string {
	if n := len(rc.GetRoutes()); n > 0 {
		return rc.GetRoutes()[n-1].GetRoute().GetCluster()
	}
	return ""
}

// rawStream is what both raw kinds share: a gRPC connection, the subscription, and the stream's lifecycle.
type rawStream struct {
	base
	conn *grpc.ClientConn

	mu      sync.Mutex
	subs    map[string]time.Time // topic → when it joined the subscription
	routes  map[string]string    // topic → the cluster of its route, on the current stream
	clas    map[string]*endpointv3.ClusterLoadAssignment
	readyAt time.Time // the current stream's first route answer; zero without one
	offline time.Time
	stop    context.CancelFunc // the current stream
}

func (s *rawStream) init(b identity, addr string, topics []string) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	now := time.Now()
	s.identity, s.conn, s.subs = b, conn, make(map[string]time.Time, len(topics))
	for _, t := range topics {
		s.subs[t] = now
	}
	return nil
}

// loop runs streams until ctx ends, waiting out the offline time churn sets and a short jittered pause between
// two streams.
func (s *rawStream) loop(ctx context.Context, stream func(context.Context) error) {
	for ctx.Err() == nil {
		sctx, cancel := context.WithCancel(ctx)
		s.mu.Lock()
		s.stop = cancel
		s.mu.Unlock()
		_ = stream(sctx)
		cancel()
		s.mu.Lock()
		s.readyAt, s.stop = time.Time{}, nil
		wait := time.Until(s.offline)
		s.mu.Unlock()
		wait = max(wait, 20*time.Millisecond+rand.N(80*time.Millisecond))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
}

func (s *rawStream) settled() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.readyAt.IsZero()
}

func (s *rawStream) subscriptions() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Sorted(maps.Keys(s.subs))
}

func (s *rawStream) disconnect(offline time.Duration, _ *rand.Rand) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stop == nil || s.readyAt.IsZero() {
		return false
	}
	s.reconnects.Add(1)
	s.offline = time.Now().Add(offline)
	s.stop()
	return true
}

// observeLocked reads the current stream's world.
func (s *rawStream) observeLocked(before time.Time, absent map[string]bool) (map[string]held, bool) {
	if s.readyAt.IsZero() || !s.readyAt.Before(before) {
		return nil, false
	}
	out := make(map[string]held, len(s.subs))
	for t, at := range s.subs {
		if !at.Before(before) {
			continue
		}
		cluster, ok := s.routes[t]
		switch {
		case !ok:
			out[t] = held{absent: absent[t], why: "no route"}
		case s.clas[cluster] == nil:
			out[t] = held{why: "no endpoints for cluster " + cluster}
		default:
			out[t] = heldFrom(cluster, s.clas[cluster])
		}
	}
	return out, true
}

func (s *rawStream) stats() sidecarStats { return s.counts() }

func (s *rawStream) close() { s.conn.Close() }

// rawDelta is a raw delta ADS stream: it subscribes to its topics' routes on demand and to the endpoints of the
// clusters they name, ACKs everything, and after a reconnect subscribes afresh (no initial_resource_versions):
// the first answer must hold every topic.
type rawDelta struct {
	rawStream
	absent map[string]bool // told absent on the current stream
	refs   map[string]int  // cluster → routes naming it
	eds    map[string]bool // clusters subscribed to on the current stream
	send   func(*discovery.DeltaDiscoveryRequest) error
}

func newRawDelta(ctx context.Context, wg *sync.WaitGroup, b identity, addr string, topics []string) (*rawDelta, error) {
	s := &rawDelta{}
	if err := s.init(b, addr, topics); err != nil {
		return nil, err
	}
	wg.Go(func() { s.loop(ctx, s.stream) })
	return s, nil
}

func (s *rawDelta) stream(ctx context.Context) error {
	st, err := discovery.NewAggregatedDiscoveryServiceClient(s.conn).DeltaAggregatedResources(ctx)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.routes, s.clas, s.absent, s.refs, s.eds = map[string]string{}, map[string]*endpointv3.ClusterLoadAssignment{}, map[string]bool{}, map[string]int{}, map[string]bool{}
	initial := slices.Sorted(maps.Keys(s.subs))
	asked := time.Now()
	s.send = st.Send // called under mu only
	err = st.Send(&discovery.DeltaDiscoveryRequest{Node: &corev3.Node{Id: s.node()}, TypeUrl: translate.RouteType,
		ResourceNamesSubscribe: initial})
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.send = nil
		s.mu.Unlock()
	}()
	if err != nil {
		return err
	}
	first := true
	for {
		resp, err := st.Recv()
		if err != nil {
			return err
		}
		s.updates.Add(1)
		s.mu.Lock()
		if resp.GetTypeUrl() == translate.RouteType && first {
			first = false
			s.readyAt = time.Now()
			got := map[string]bool{}
			for _, r := range resp.GetResources() {
				got[r.GetName()] = true
			}
			var lacking []string
			for _, t := range initial {
				if _, still := s.subs[t]; still && !got[t] {
					lacking = append(lacking, t)
				}
			}
			s.ck.firstAnswer(s.id, asked, lacking)
		}
		err = s.handle(resp)
		s.mu.Unlock()
		if err != nil {
			return err
		}
	}
}

// handle applies a response, ACKs it and sends the endpoint subscriptions its routes call for. Caller holds mu.
func (s *rawDelta) handle(resp *discovery.DeltaDiscoveryResponse) error {
	now := time.Now()
	touched := map[string]bool{}
	switch resp.GetTypeUrl() {
	case translate.RouteType:
		for _, r := range resp.GetResources() {
			if _, ok := s.subs[r.GetName()]; !ok {
				continue
			}
			var rc rmqv3.RouteConfiguration
			if err := proto.Unmarshal(r.GetResource().GetValue(), &rc); err != nil {
				s.ck.note("%s: undecodable route %s: %v", s.id, r.GetName(), err)
				continue
			}
			s.setRoute(r.GetName(), defaultCluster(&rc), touched)
			delete(s.absent, r.GetName())
		}
		for _, name := range resp.GetRemovedResources() {
			if _, ok := s.subs[name]; !ok {
				continue
			}
			s.ck.gone(s.id, name, now, "a delta removal")
			s.setRoute(name, "", touched)
			s.absent[name] = true
		}
	case translate.EndpointType:
		for _, r := range resp.GetResources() {
			if s.refs[r.GetName()] == 0 {
				continue
			}
			var cla endpointv3.ClusterLoadAssignment
			if err := proto.Unmarshal(r.GetResource().GetValue(), &cla); err != nil {
				s.ck.note("%s: undecodable endpoints %s: %v", s.id, r.GetName(), err)
				continue
			}
			s.clas[r.GetName()] = &cla
		}
		for _, name := range resp.GetRemovedResources() {
			delete(s.clas, name)
		}
	}
	if err := s.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce()}); err != nil {
		return err
	}
	return s.flushEDS(touched)
}

// setRoute points a topic at a cluster ("" drops it), counting the routes that name each cluster.
func (s *rawDelta) setRoute(topic, cluster string, touched map[string]bool) {
	old, had := s.routes[topic]
	if had && old == cluster {
		return
	}
	if cluster != "" {
		s.routes[topic] = cluster
		s.refs[cluster]++
		touched[cluster] = true
	} else {
		delete(s.routes, topic)
	}
	if had {
		if s.refs[old]--; s.refs[old] <= 0 {
			delete(s.refs, old)
			delete(s.clas, old)
		}
		touched[old] = true
	}
}

// flushEDS brings the stream's endpoint subscriptions to the clusters the routes name.
func (s *rawDelta) flushEDS(touched map[string]bool) error {
	req := &discovery.DeltaDiscoveryRequest{TypeUrl: translate.EndpointType}
	for _, c := range slices.Sorted(maps.Keys(touched)) {
		switch wanted := s.refs[c] > 0; {
		case wanted && !s.eds[c]:
			req.ResourceNamesSubscribe = append(req.ResourceNamesSubscribe, c)
			s.eds[c] = true
		case !wanted && s.eds[c]:
			req.ResourceNamesUnsubscribe = append(req.ResourceNamesUnsubscribe, c)
			delete(s.eds, c)
		}
	}
	if len(req.ResourceNamesSubscribe)+len(req.ResourceNamesUnsubscribe) == 0 || s.send == nil {
		return nil
	}
	return s.send(req)
}

func (s *rawDelta) observe(before time.Time) (map[string]held, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.observeLocked(before, s.absent)
}

func (s *rawDelta) resubscribe(add, remove []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	touched := map[string]bool{}
	for _, t := range remove {
		delete(s.subs, t)
		if s.routes != nil {
			s.setRoute(t, "", touched)
			delete(s.absent, t)
		}
	}
	for _, t := range add {
		s.subs[t] = now
	}
	if s.send == nil {
		return // the next stream subscribes to what is wanted then
	}
	if s.send(&discovery.DeltaDiscoveryRequest{TypeUrl: translate.RouteType, ResourceNamesSubscribe: add, ResourceNamesUnsubscribe: remove}) == nil {
		_ = s.flushEDS(touched)
	}
}

// dropRoutes is FaultSidecarDropsRoutes: the sidecar forgets every route it holds and stays subscribed.
func (s *rawDelta) dropRoutes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	touched := map[string]bool{}
	n := len(s.routes)
	for t := range s.routes {
		s.setRoute(t, "", touched)
	}
	if s.send != nil {
		_ = s.flushEDS(touched)
	}
	return n
}

// rawSotw is a raw state-of-the-world ADS stream: every answer of a type is the whole world of that type, so each
// route answer must hold every stable topic subscribed to for longer than the bound.
type rawSotw struct {
	rawStream
	sentAt  map[string]time.Time // topic → when the current stream first asked for it
	edsWant []string             // the clusters last asked for
	version map[string]string    // per type, of the last answer
	nonce   map[string]string
	send    func(*discovery.DiscoveryRequest) error
}

func newRawSotw(ctx context.Context, wg *sync.WaitGroup, b identity, addr string, topics []string) (*rawSotw, error) {
	s := &rawSotw{}
	if err := s.init(b, addr, topics); err != nil {
		return nil, err
	}
	wg.Go(func() { s.loop(ctx, s.stream) })
	return s, nil
}

func (s *rawSotw) stream(ctx context.Context) error {
	st, err := discovery.NewAggregatedDiscoveryServiceClient(s.conn).StreamAggregatedResources(ctx)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.routes, s.clas, s.edsWant = map[string]string{}, map[string]*endpointv3.ClusterLoadAssignment{}, nil
	s.version, s.nonce, s.sentAt = map[string]string{}, map[string]string{}, map[string]time.Time{}
	initial := slices.Sorted(maps.Keys(s.subs))
	asked := time.Now()
	for _, t := range initial {
		s.sentAt[t] = asked
	}
	s.send = st.Send
	err = st.Send(&discovery.DiscoveryRequest{Node: &corev3.Node{Id: s.node()}, TypeUrl: translate.RouteType, ResourceNames: initial})
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.send = nil
		s.mu.Unlock()
	}()
	if err != nil {
		return err
	}
	first := true
	for {
		resp, err := st.Recv()
		if err != nil {
			return err
		}
		s.updates.Add(1)
		s.mu.Lock()
		err = s.handle(resp, &first, asked, initial)
		s.mu.Unlock()
		if err != nil {
			return err
		}
	}
}

// handle replaces the world of the response's type, checks that a route answer holds every topic it must, ACKs,
// and asks for the endpoints of the clusters the routes now name. Caller holds mu.
func (s *rawSotw) handle(resp *discovery.DiscoveryResponse, first *bool, asked time.Time, initial []string) error {
	now := time.Now()
	typeURL := resp.GetTypeUrl()
	s.version[typeURL], s.nonce[typeURL] = resp.GetVersionInfo(), resp.GetNonce()
	switch typeURL {
	case translate.RouteType:
		world := map[string]string{}
		for _, a := range resp.GetResources() {
			var rc rmqv3.RouteConfiguration
			if err := proto.Unmarshal(a.GetValue(), &rc); err != nil {
				s.ck.note("%s: undecodable route: %v", s.id, err)
				continue
			}
			if _, ok := s.subs[rc.GetName()]; ok {
				world[rc.GetName()] = defaultCluster(&rc)
			}
		}
		if *first {
			*first = false
			s.readyAt = now
			var lacking []string
			for _, t := range initial {
				if _, still := s.subs[t]; still && world[t] == "" {
					lacking = append(lacking, t)
				}
			}
			s.ck.firstAnswer(s.id, asked, lacking)
		} else {
			for t, at := range s.sentAt {
				if _, still := s.subs[t]; still && world[t] == "" && at.Before(now.Add(-s.cfg.Bound)) {
					s.ck.gone(s.id, t, now, "a state-of-the-world answer without it")
				}
			}
		}
		s.routes = world
		if err := s.ack(typeURL, slices.Sorted(maps.Keys(s.subs))); err != nil {
			return err
		}
		return s.askEndpoints()
	case translate.EndpointType:
		clas := map[string]*endpointv3.ClusterLoadAssignment{}
		for _, a := range resp.GetResources() {
			var cla endpointv3.ClusterLoadAssignment
			if err := proto.Unmarshal(a.GetValue(), &cla); err != nil {
				s.ck.note("%s: undecodable endpoints: %v", s.id, err)
				continue
			}
			clas[cla.GetClusterName()] = &cla
		}
		s.clas = clas
		return s.ack(typeURL, s.edsWant)
	}
	return s.ack(typeURL, nil)
}

// ack asks for names of typeURL again, with the last answer's version and nonce.
func (s *rawSotw) ack(typeURL string, names []string) error {
	if s.send == nil {
		return nil
	}
	return s.send(&discovery.DiscoveryRequest{TypeUrl: typeURL, VersionInfo: s.version[typeURL], ResponseNonce: s.nonce[typeURL],
		ResourceNames: names})
}

// askEndpoints asks for the endpoints of the clusters the routes name, when they changed. An empty list would be
// a wildcard request: a stream whose topics all lack routes keeps its last endpoint request.
func (s *rawSotw) askEndpoints() error {
	set := map[string]bool{}
	for _, c := range s.routes {
		if c != "" {
			set[c] = true
		}
	}
	want := slices.Sorted(maps.Keys(set))
	if len(want) == 0 || slices.Equal(want, s.edsWant) {
		return nil
	}
	s.edsWant = want
	return s.ack(translate.EndpointType, want)
}

func (s *rawSotw) observe(before time.Time) (map[string]held, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.observeLocked(before, nil)
}

func (s *rawSotw) resubscribe(add, remove []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	for _, t := range remove {
		delete(s.subs, t)
		delete(s.sentAt, t)
	}
	for _, t := range add {
		s.subs[t] = now
	}
	if s.send == nil {
		return
	}
	for _, t := range add {
		s.sentAt[t] = now
	}
	_ = s.ack(translate.RouteType, slices.Sorted(maps.Keys(s.subs)))
}
