package peer

import (
	"bytes"
	"context"
	"crypto/tls"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	gcpcache "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/delta/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	grpcpeer "google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/rocketpilot/rocketpilot/routing"
)

// Service is the gRPC service replicas share routes on, beside the xDS services on the same port: delta xDS
// (DeltaDiscoveryRequest and DeltaDiscoveryResponse) of TypeURL only, so that a follower's stream never meets
// the cache that serves sidecars, nor its limits and identity rules.
const Service = "rocketpilot.peer.v1.Peer"

// Method is the service's one method, a delta xDS stream.
const Method = "/" + Service + "/DeltaSourceRoutes"

var streamDesc = grpc.StreamDesc{StreamName: "DeltaSourceRoutes", ServerStreams: true, ClientStreams: true}

// Server serves a table's source routes to followers. A topic's resource exists while a follower subscribes to it
// by name (in-use discovery: the follower's sidecars use it; it is also wanted in the leader's table, so that the
// leader's watchers poll it) or any follower subscribes to every topic (all discovery); changes of the table
// update the resources of the topics that changed, in proportion to the change.
type Server struct {
	table *routing.Table
	cache *gcpcache.LinearCache
	delta delta.Server
	log   *slog.Logger
	names []string // under TLS, the DNS names a follower's certificate must carry one of (any, when empty)

	serving  atomic.Bool  // this replica leads: followers are served; otherwise refused, and ended
	maxNames atomic.Int64 // MaxNamesPerStream; tests lower it
	streamMu sync.Mutex
	ends     map[*context.CancelFunc]struct{} // the open streams' cancels

	mu        sync.Mutex
	streams   map[int64]*followerStream
	wanted    map[string]int    // topic → streams that subscribe to it by name
	releases  map[string]func() // topic → its hold on the table's interest
	wildcards int               // streams that subscribe to every topic
	sent      map[string][]byte // resource name → the JSON in the cache, so that an unchanged one is not replaced
}

type followerStream struct {
	names    map[string]struct{}
	wildcard bool
}

// NewServer returns a server of table's source routes, serving (SetServing) from the start. Run keeps it current;
// Register serves it. names, when any, are the DNS names one of which a follower's certificate must carry under
// TLS: the replicas' own (the Service's name, which their serving certificates carry).
func NewServer(ctx context.Context, table *routing.Table, names []string, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{table: table, cache: gcpcache.NewLinearCache(TypeURL), log: log, names: names, streams: map[int64]*followerStream{},
		wanted: map[string]int{}, releases: map[string]func(){}, sent: map[string][]byte{}, ends: map[*context.CancelFunc]struct{}{}}
	s.serving.Store(true)
	s.maxNames.Store(MaxNamesPerStream)
	s.delta = delta.NewServer(ctx, s.cache, callbacks{s})
	return s
}

// SetServing turns serving followers on (this replica leads) or off: a replica that follows another refuses
// followers (Unavailable, so that they look for the leader again) and ends the streams it has, so that none stays
// attached to a replica that no longer polls.
func (s *Server) SetServing(on bool) {
	s.serving.Store(on)
	if on {
		return
	}
	s.streamMu.Lock()
	defer s.streamMu.Unlock()
	for end := range s.ends {
		(*end)()
	}
}

// Register adds the service to a gRPC server.
func (s *Server) Register(g *grpc.Server) {
	g.RegisterService(&grpc.ServiceDesc{ServiceName: Service, HandlerType: (*any)(nil),
		Streams: []grpc.StreamDesc{{StreamName: streamDesc.StreamName, ServerStreams: true, ClientStreams: true,
			Handler: func(_ any, stream grpc.ServerStream) error { return s.serve(stream) }}}}, s)
}

func (s *Server) serve(stream grpc.ServerStream) error {
	if err := s.replicaOnly(stream.Context()); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	s.streamMu.Lock()
	if !s.serving.Load() {
		s.streamMu.Unlock()
		return status.Error(codes.Unavailable, "this replica follows another: follow the leader Lease's holder")
	}
	s.ends[&cancel] = struct{}{}
	s.streamMu.Unlock()
	defer func() {
		s.streamMu.Lock()
		delete(s.ends, &cancel)
		s.streamMu.Unlock()
	}()
	done := make(chan error, 1)
	go func() {
		done <- s.delta.DeltaStreamHandler(&grpc.GenericServerStream[discovery.DeltaDiscoveryRequest, discovery.DeltaDiscoveryResponse]{ServerStream: stream}, TypeURL)
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		// Ended by SetServing(false), or the client went: returning ends the stream, and the handler's Recv fails.
		if stream.Context().Err() == nil {
			return status.Error(codes.Unavailable, "this replica no longer leads: follow the leader Lease's holder")
		}
		return <-done
	}
}

// replicaOnly refuses a peer stream from a workload's certificate (a SPIFFE ID, as the workload CA issues to
// sidecars) and, with names, from a certificate that carries none of them: routes before policies are the
// replicas' own, as the admin API is operators'.
func (s *Server) replicaOnly(ctx context.Context) error {
	p, ok := grpcpeer.FromContext(ctx)
	if !ok {
		return nil
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		return nil
	}
	cert := info.State.PeerCertificates[0]
	if hasSPIFFE(info.State) {
		return status.Errorf(codes.PermissionDenied, "peer routes are for rocketpilot replicas; %s is a workload", cert.Subject)
	}
	if len(s.names) > 0 && !slices.ContainsFunc(cert.DNSNames, func(n string) bool { return slices.Contains(s.names, n) }) {
		return status.Errorf(codes.PermissionDenied, "peer routes are for rocketpilot replicas: the certificate of %s names none of %v", cert.Subject, s.names)
	}
	return nil
}

func hasSPIFFE(st tls.ConnectionState) bool {
	for _, u := range st.PeerCertificates[0].URIs {
		if strings.EqualFold(u.Scheme, "spiffe") {
			return true
		}
	}
	return false
}

// Run follows the table until ctx ends, keeping the resources current.
func (s *Server) Run(ctx context.Context) {
	sub := s.table.Subscribe()
	defer sub.Close()
	s.refreshBrokers()
	for {
		cs, err := sub.Next(ctx)
		if err != nil {
			return
		}
		s.mu.Lock()
		for name := range cs.Topics {
			if s.wildcards > 0 || s.wanted[name] > 0 {
				s.refreshLocked(name)
			}
		}
		s.mu.Unlock()
		s.refreshBrokers()
	}
}

// refreshLocked puts a topic's resource in the cache as the table has it now (or removes it when the table has
// no such topic), unless it is unchanged.
func (s *Server) refreshLocked(name string) {
	routes := s.table.TopicSources(name)
	if routes == nil {
		s.dropLocked(name)
		return
	}
	s.putLocked(name, topicResource{Sources: routes})
}

func (s *Server) putLocked(name string, v any) {
	res, raw, err := encode(v)
	if err != nil {
		s.log.Error("encode a peer resource", "name", name, "err", err)
		return
	}
	if old, ok := s.sent[name]; ok && bytes.Equal(old, raw) {
		return
	}
	s.sent[name] = raw
	_ = s.cache.UpdateResource(name, res)
}

func (s *Server) dropLocked(name string) {
	if _, ok := s.sent[name]; !ok {
		return
	}
	delete(s.sent, name)
	_ = s.cache.DeleteResource(name)
}

// refreshBrokers puts the sources' broker tables in the cache.
func (s *Server) refreshBrokers() {
	tables := s.table.SourceBrokers()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.putLocked(BrokersName, brokersResource{Sources: tables})
}

// MaxNamesPerStream bounds a follower's subscriptions by name: each is a topic the leader polls for it. A
// replica whose sidecars use more follows every topic instead (all discovery).
const MaxNamesPerStream = 1 << 20

// subscribe records a stream's new and dropped subscriptions: topics wanted by name are held in the table's
// interest and put in the cache before the stream's watch is made, so that its first answer has them. A request
// that would take a stream past MaxNamesPerStream is refused whole.
func (s *Server) subscribe(id int64, req *discovery.DeltaDiscoveryRequest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.streams[id]
	if st == nil {
		st = &followerStream{names: map[string]struct{}{}}
		s.streams[id] = st
	}
	if n, limit := len(st.names)+len(req.ResourceNamesSubscribe)-len(req.ResourceNamesUnsubscribe), int(s.maxNames.Load()); n > limit {
		return status.Errorf(codes.ResourceExhausted, "%d topics subscribed by name on one stream: the limit is %d (follow every topic instead)", n, limit)
	}
	for _, name := range req.ResourceNamesSubscribe {
		switch name {
		case "*":
			s.wildcardLocked(st, true)
		case BrokersName:
		default:
			if _, ok := st.names[name]; !ok {
				st.names[name] = struct{}{}
				s.wantLocked(name)
			}
		}
	}
	for _, name := range req.ResourceNamesUnsubscribe {
		if name == "*" {
			s.wildcardLocked(st, false)
			continue
		}
		if _, ok := st.names[name]; ok {
			delete(st.names, name)
			s.unwantLocked(name)
		}
	}
	return nil
}

func (s *Server) wantLocked(name string) {
	s.wanted[name]++
	if s.wanted[name] == 1 {
		s.releases[name] = s.table.Interest().Want(name)
		if s.wildcards == 0 {
			s.refreshLocked(name)
		}
	}
}

func (s *Server) unwantLocked(name string) {
	s.wanted[name]--
	if s.wanted[name] > 0 {
		return
	}
	delete(s.wanted, name)
	if release := s.releases[name]; release != nil {
		release()
		delete(s.releases, name)
	}
	if s.wildcards == 0 {
		s.dropLocked(name)
	}
}

// wildcardLocked turns a stream's subscription to every topic on or off: the first such stream puts every topic
// in the cache (once, O(topics)); when the last goes, only the topics wanted by name stay.
func (s *Server) wildcardLocked(st *followerStream, on bool) {
	if st.wildcard == on {
		return
	}
	st.wildcard = on
	if on {
		s.wildcards++
		if s.wildcards == 1 {
			s.table.Range(func(t *routing.Topic) bool {
				s.refreshLocked(t.Name)
				return true
			})
		}
		return
	}
	s.wildcards--
	if s.wildcards == 0 {
		for name := range s.sent {
			if name != BrokersName && s.wanted[name] == 0 {
				s.dropLocked(name)
			}
		}
	}
}

// closed forgets a stream's subscriptions.
func (s *Server) closed(id int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.streams[id]
	if st == nil {
		return
	}
	delete(s.streams, id)
	s.wildcardLocked(st, false)
	for name := range st.names {
		s.unwantLocked(name)
	}
}

// Followers is how many follower streams are open.
func (s *Server) Followers() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.streams)
}

// callbacks are go-control-plane's delta callbacks: subscriptions are tracked per stream.
type callbacks struct{ s *Server }

func (c callbacks) OnDeltaStreamOpen(context.Context, int64, string) error { return nil }
func (c callbacks) OnDeltaStreamClosed(id int64, _ *core.Node)             { c.s.closed(id) }
func (c callbacks) OnStreamDeltaRequest(id int64, req *discovery.DeltaDiscoveryRequest) error {
	if req.TypeUrl != "" && req.TypeUrl != TypeURL {
		return status.Errorf(codes.InvalidArgument, "the peer service serves %s only, not %s", TypeURL, req.TypeUrl)
	}
	return c.s.subscribe(id, req)
}
func (c callbacks) OnStreamDeltaResponse(int64, *discovery.DeltaDiscoveryRequest, *discovery.DeltaDiscoveryResponse) {
}
