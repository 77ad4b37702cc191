package server

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	rmqv3 "github.com/envoyproxy/go-control-plane/contrib/envoy/extensions/filters/network/rocketmq_proxy/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	endpointservice "github.com/envoyproxy/go-control-plane/envoy/service/endpoint/v3"
	extensionservice "github.com/envoyproxy/go-control-plane/envoy/service/extension/v3"
	listenerservice "github.com/envoyproxy/go-control-plane/envoy/service/listener/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/rocketpilot/rocketpilot/xds/translate"
)

// xdsMode is one way a client can talk to the server: delta or state of the world, on one ADS stream or on the
// per-type services (one stream per type, which nothing orders between).
type xdsMode struct {
	name       string
	delta, ads bool
}

var xdsModes = []xdsMode{
	{"delta ADS", true, true}, {"SotW ADS", false, true}, {"delta per-type", true, false}, {"SotW per-type", false, false},
}

// xdsResponse is a response of either protocol, with what the tests look at.
type xdsResponse struct {
	typeURL, nonce, version string
	resources               map[string][]byte // name → resource bytes
	removed                 []string
}

func (r xdsResponse) names() []string {
	var out []string
	for name := range r.resources {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// rawClient is a raw xDS client in any xdsMode. The test decides when it subscribes, ACKs and NACKs.
type rawClient struct {
	t    *testing.T
	mode xdsMode
	node *corev3.Node
	conn *grpc.ClientConn
	ctx  context.Context
	recv chan xdsResponse

	mu      sync.Mutex
	delta   map[string]deltaSender // by type ("" for the ADS stream)
	sotw    map[string]sotwSender
	named   map[string]bool     // streams that sent the node
	subs    map[string][]string // SotW: the names of each type's subscription
	acked   map[string]string   // SotW: each type's accepted version
	nonces  map[string]string   // SotW: each type's latest nonce
	started map[string]bool
}

type deltaSender interface {
	Send(*discovery.DeltaDiscoveryRequest) error
	Recv() (*discovery.DeltaDiscoveryResponse, error)
}

type sotwSender interface {
	Send(*discovery.DiscoveryRequest) error
	Recv() (*discovery.DiscoveryResponse, error)
}

func openClient(t *testing.T, addr string, mode xdsMode, n *corev3.Node) *rawClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); conn.Close() })
	return &rawClient{t: t, mode: mode, node: n, conn: conn, ctx: ctx, recv: make(chan xdsResponse, 256),
		delta: map[string]deltaSender{}, sotw: map[string]sotwSender{}, named: map[string]bool{}, subs: map[string][]string{},
		acked: map[string]string{}, nonces: map[string]string{}, started: map[string]bool{}}
}

// streamKey is the stream a type travels on: the ADS stream, or its own.
func (c *rawClient) streamKey(typeURL string) string {
	if c.mode.ads {
		return ""
	}
	return typeURL
}

func (c *rawClient) deltaStream(typeURL string) deltaSender {
	key := c.streamKey(typeURL)
	if st := c.delta[key]; st != nil {
		return st
	}
	var st deltaSender
	var err error
	switch {
	case c.mode.ads:
		st, err = discovery.NewAggregatedDiscoveryServiceClient(c.conn).DeltaAggregatedResources(c.ctx)
	case typeURL == translate.ClusterType:
		st, err = clusterservice.NewClusterDiscoveryServiceClient(c.conn).DeltaClusters(c.ctx)
	case typeURL == translate.EndpointType:
		st, err = endpointservice.NewEndpointDiscoveryServiceClient(c.conn).DeltaEndpoints(c.ctx)
	case typeURL == translate.ListenerType:
		st, err = listenerservice.NewListenerDiscoveryServiceClient(c.conn).DeltaListeners(c.ctx)
	case typeURL == translate.ExtensionType:
		st, err = extensionservice.NewExtensionConfigDiscoveryServiceClient(c.conn).DeltaExtensionConfigs(c.ctx)
	default:
		c.t.Fatalf("no per-type service for %s", typeURL)
	}
	if err != nil {
		c.t.Fatal(err)
	}
	c.delta[key] = st
	go func() {
		for {
			r, err := st.Recv()
			if err != nil {
				return
			}
			out := xdsResponse{typeURL: r.TypeUrl, nonce: r.Nonce, version: r.SystemVersionInfo, resources: map[string][]byte{}, removed: r.RemovedResources}
			for _, res := range r.Resources {
				out.resources[res.Name] = res.Resource.GetValue()
			}
			c.recv <- out
		}
	}()
	return st
}

func (c *rawClient) sotwStream(typeURL string) sotwSender {
	key := c.streamKey(typeURL)
	if st := c.sotw[key]; st != nil {
		return st
	}
	var st sotwSender
	var err error
	switch {
	case c.mode.ads:
		st, err = discovery.NewAggregatedDiscoveryServiceClient(c.conn).StreamAggregatedResources(c.ctx)
	case typeURL == translate.ClusterType:
		st, err = clusterservice.NewClusterDiscoveryServiceClient(c.conn).StreamClusters(c.ctx)
	case typeURL == translate.EndpointType:
		st, err = endpointservice.NewEndpointDiscoveryServiceClient(c.conn).StreamEndpoints(c.ctx)
	case typeURL == translate.ListenerType:
		st, err = listenerservice.NewListenerDiscoveryServiceClient(c.conn).StreamListeners(c.ctx)
	case typeURL == translate.ExtensionType:
		st, err = extensionservice.NewExtensionConfigDiscoveryServiceClient(c.conn).StreamExtensionConfigs(c.ctx)
	default:
		c.t.Fatalf("no per-type service for %s", typeURL)
	}
	if err != nil {
		c.t.Fatal(err)
	}
	c.sotw[key] = st
	go func() {
		for {
			r, err := st.Recv()
			if err != nil {
				return
			}
			out := xdsResponse{typeURL: r.TypeUrl, nonce: r.Nonce, version: r.VersionInfo, resources: map[string][]byte{}}
			for _, res := range r.Resources {
				out.resources[resourceName(c.t, r.TypeUrl, res)] = res.GetValue()
			}
			c.recv <- out
		}
	}()
	return st
}

// resourceName is the name of a state-of-the-world resource, which travels without one.
func resourceName(t *testing.T, typeURL string, res *anypb.Any) string {
	var m interface {
		proto.Message
	}
	switch typeURL {
	case translate.ClusterType:
		m = &clusterv3.Cluster{}
	case translate.EndpointType:
		m = &endpointv3.ClusterLoadAssignment{}
	case translate.ListenerType:
		m = &listenerv3.Listener{}
	case translate.ExtensionType:
		m = &corev3.TypedExtensionConfig{}
	default:
		t.Errorf("no name for a resource of %s", typeURL)
		return ""
	}
	if err := proto.Unmarshal(res.GetValue(), m); err != nil {
		t.Errorf("%s: %v", typeURL, err)
		return ""
	}
	if cla, ok := m.(*endpointv3.ClusterLoadAssignment); ok {
		return cla.GetClusterName()
	}
	return m.(interface{ GetName() string }).GetName()
}

func (c *rawClient) sendDelta(typeURL string, req *discovery.DeltaDiscoveryRequest) {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.deltaStream(typeURL)
	if key := c.streamKey(typeURL); !c.named[key] {
		req.Node, c.named[key] = c.node, true
	}
	if err := st.Send(req); err != nil {
		c.t.Fatal(err)
	}
}

func (c *rawClient) sendSotw(typeURL string, req *discovery.DiscoveryRequest) {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.sotwStream(typeURL)
	if key := c.streamKey(typeURL); !c.named[key] {
		req.Node, c.named[key] = c.node, true
	}
	req.TypeUrl, req.ResourceNames = typeURL, c.subs[typeURL]
	if err := st.Send(req); err != nil {
		c.t.Fatal(err)
	}
}

// subscribe asks for names of a type (a wildcard when none): delta adds them, state of the world makes them the
// type's whole subscription, sent with the type's accepted version and latest nonce, as Envoy does.
func (c *rawClient) subscribe(typeURL string, names ...string) {
	c.t.Helper()
	if c.mode.delta {
		c.sendDelta(typeURL, &discovery.DeltaDiscoveryRequest{TypeUrl: typeURL, ResourceNamesSubscribe: names})
		return
	}
	c.mu.Lock()
	c.subs[typeURL] = names
	version, nonce := c.acked[typeURL], c.nonces[typeURL]
	c.mu.Unlock()
	c.sendSotw(typeURL, &discovery.DiscoveryRequest{VersionInfo: version, ResponseNonce: nonce})
}

func (c *rawClient) ack(r xdsResponse) {
	c.t.Helper()
	if c.mode.delta {
		c.sendDelta(r.typeURL, &discovery.DeltaDiscoveryRequest{TypeUrl: r.typeURL, ResponseNonce: r.nonce})
		return
	}
	c.mu.Lock()
	c.acked[r.typeURL], c.nonces[r.typeURL] = r.version, r.nonce
	c.mu.Unlock()
	c.sendSotw(r.typeURL, &discovery.DiscoveryRequest{VersionInfo: r.version, ResponseNonce: r.nonce})
}

func (c *rawClient) nack(r xdsResponse, msg string) {
	c.t.Helper()
	detail := &status.Status{Code: 3, Message: msg}
	if c.mode.delta {
		c.sendDelta(r.typeURL, &discovery.DeltaDiscoveryRequest{TypeUrl: r.typeURL, ResponseNonce: r.nonce, ErrorDetail: detail})
		return
	}
	c.mu.Lock()
	c.nonces[r.typeURL] = r.nonce
	version := c.acked[r.typeURL]
	c.mu.Unlock()
	c.sendSotw(r.typeURL, &discovery.DiscoveryRequest{VersionInfo: version, ResponseNonce: r.nonce, ErrorDetail: detail})
}

// next returns the next response of a type, failing the test if none comes within answerWithin. Responses of
// other types that arrive first are handed to other, which may ACK them.
func (c *rawClient) next(typeURL string, other func(xdsResponse)) xdsResponse {
	c.t.Helper()
	deadline := time.After(answerWithin)
	for {
		select {
		case r := <-c.recv:
			if r.typeURL == typeURL {
				return r
			}
			if other == nil {
				c.t.Fatalf("a %s response (%v) while waiting for %s", r.typeURL, r.names(), typeURL)
			}
			other(r)
		case <-deadline:
			c.t.Fatalf("no %s response within %v", typeURL, answerWithin)
			return xdsResponse{}
		}
	}
}

// none fails the test if a response of the type arrives within quietFor; responses of other types go to other.
func (c *rawClient) none(typeURL, why string, other func(xdsResponse)) {
	c.t.Helper()
	deadline := time.After(quietFor)
	for {
		select {
		case r := <-c.recv:
			if r.typeURL == typeURL {
				c.t.Fatalf("%s response %v: %s", typeURL, r.names(), why)
			}
			if other == nil {
				c.t.Fatalf("a %s response (%v) while watching for %s", r.typeURL, r.names(), typeURL)
			}
			other(r)
		case <-deadline:
			return
		}
	}
}

// routedClusters returns the clusters an ECDS response's RocketMQ filter config routes to.
func routedClusters(t *testing.T, r xdsResponse) []string {
	t.Helper()
	var ext corev3.TypedExtensionConfig
	if err := proto.Unmarshal(r.resources[translate.ExtensionConfigName], &ext); err != nil {
		t.Fatal(err)
	}
	var proxy rmqv3.RocketmqProxy
	if err := ext.GetTypedConfig().UnmarshalTo(&proxy); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, route := range proxy.GetRouteConfig().GetRoutes() {
		if c := route.GetRoute().GetCluster(); c != "" && !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	slices.Sort(out)
	return out
}
