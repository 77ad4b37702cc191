// Package server runs rocketpilot's xDS gRPC server (go-control-plane's ADS and per-type services, delta and
// state-of-the-world) over the cache, and its admin HTTP API.
package server

import (
	"context"
	"net"
	"slices"
	"time"

	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	endpointservice "github.com/envoyproxy/go-control-plane/envoy/service/endpoint/v3"
	extensionservice "github.com/envoyproxy/go-control-plane/envoy/service/extension/v3"
	listenerservice "github.com/envoyproxy/go-control-plane/envoy/service/listener/v3"
	gcpserver "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/keepalive"

	"github.com/rocketpilot/rocketpilot/xds/cache"
	"github.com/rocketpilot/rocketpilot/xds/wire"
)

// Options tune the gRPC server. Zero values take the defaults in parentheses.
type Options struct {
	MaxRecvMsgSize int           // largest request accepted (4 MiB)
	MaxSendMsgSize int           // largest response sent (64 MiB: a node's ECDS config grows with its topics)
	KeepaliveTime  time.Duration // ping an idle client after (30s)
	KeepaliveWait  time.Duration // close if the ping is not answered within (10s)
	MaxStreams     uint32        // concurrent streams per connection (1000)
	// Compression compresses responses to clients that accept it: "gzip" (the default) or "none". A gRPC client
	// accepts a compressor by naming it in grpc-accept-encoding; grpc-go clients that link the gzip codec (the Go
	// sidecar client does) name it, Envoy's own gRPC client names none and gets plain responses.
	Compression string
	// Stats, when set, counts the bytes sent and received on the wire.
	Stats *WireStats
	// Creds secures the listener (TLS); nil serves plaintext.
	Creds credentials.TransportCredentials
	// Admission, when set, rate-limits new streams.
	Admission *Admission
	// Identity, when set, refuses requests whose node is not what the client certificate names (mutual TLS).
	Identity *IdentityCheck
	// Services register more gRPC services on the xDS listener: the replicas' peer service (package peer).
	Services []func(*grpc.Server)
}

// Compressions are the values Options.Compression takes.
var Compressions = []string{gzip.Name, "none"}

// newGRPC returns a gRPC server with rocketpilot's xDS services registered on c, and the callbacks
// go-control-plane's server calls: the cache, or a test's hooks in front of it.
func newGRPC(ctx context.Context, c *cache.Cache, callbacks gcpserver.Callbacks, opts Options) *grpc.Server {
	if opts.MaxRecvMsgSize <= 0 {
		opts.MaxRecvMsgSize = 4 << 20
	}
	if opts.MaxSendMsgSize <= 0 {
		opts.MaxSendMsgSize = 64 << 20
	}
	if opts.KeepaliveTime <= 0 {
		opts.KeepaliveTime = 30 * time.Second
	}
	if opts.KeepaliveWait <= 0 {
		opts.KeepaliveWait = 10 * time.Second
	}
	if opts.MaxStreams == 0 {
		opts.MaxStreams = 1000
	}
	if opts.Compression == "" {
		opts.Compression = gzip.Name
	}
	serverOpts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(opts.MaxRecvMsgSize),
		grpc.MaxSendMsgSize(opts.MaxSendMsgSize),
		grpc.MaxConcurrentStreams(opts.MaxStreams),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: opts.KeepaliveTime, Timeout: opts.KeepaliveWait}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		// Responses' resources are marshalled and compressed once for every stream they go to (package wire).
		grpc.ForceServerCodecV2(wire.Codec{}),
	}
	if opts.Stats != nil {
		serverOpts = append(serverOpts, grpc.StatsHandler(opts.Stats))
	}
	if opts.Creds != nil {
		serverOpts = append(serverOpts, grpc.Creds(opts.Creds))
	}
	var interceptors []grpc.StreamServerInterceptor
	if opts.Admission != nil {
		interceptors = append(interceptors, opts.Admission.interceptor())
	}
	if opts.Compression != "none" {
		interceptors = append(interceptors, compress(opts.Compression))
	}
	serverOpts = append(serverOpts, grpc.ChainStreamInterceptor(interceptors...))
	g := grpc.NewServer(serverOpts...)
	srv := gcpserver.NewServer(ctx, c, callbacks)
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(g, srv)
	clusterservice.RegisterClusterDiscoveryServiceServer(g, srv)
	endpointservice.RegisterEndpointDiscoveryServiceServer(g, srv)
	listenerservice.RegisterListenerDiscoveryServiceServer(g, srv)
	extensionservice.RegisterExtensionConfigDiscoveryServiceServer(g, srv)
	for _, register := range opts.Services {
		register(g)
	}
	return g
}

// compress sets the stream's response compressor when the client accepts it; other clients get plain
// responses. Every xDS service is a stream, so a stream interceptor covers them all.
func compress(name string) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if accepted, err := grpc.ClientSupportedCompressors(ss.Context()); err == nil && slices.Contains(accepted, name) {
			_ = grpc.SetSendCompressor(ss.Context(), name) // fails only for a client that does not accept it
		}
		return handler(srv, ss)
	}
}

// serveGRPC serves g on lis until ctx ends, then stops gracefully: streams are closed with GOAWAY and clients
// reconnect elsewhere; after grace, remaining streams are cut.
func serveGRPC(ctx context.Context, g *grpc.Server, lis net.Listener, grace time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- g.Serve(lis) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	stopped := make(chan struct{})
	go func() { g.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(grace):
		g.Stop()
	}
	<-errc
	return nil
}
