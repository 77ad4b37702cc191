package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/stats"
	"google.golang.org/protobuf/proto"

	"github.com/rocketpilot/rocketpilot/nameserver/embedded"
	"github.com/rocketpilot/rocketpilot/xds/translate"
)

// payloads records, from the client's side of the wire, how responses arrived.
type payloads struct {
	mu          sync.Mutex
	compression string // from the response headers
	wire, plain int    // bytes of the messages on the wire and decoded
}

func (p *payloads) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context   { return ctx }
func (p *payloads) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (p *payloads) HandleConn(context.Context, stats.ConnStats)                       {}
func (p *payloads) HandleRPC(_ context.Context, s stats.RPCStats) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch s := s.(type) {
	case *stats.InHeader:
		p.compression = s.Compression
	case *stats.InPayload:
		p.wire += s.CompressedLength
		p.plain += s.Length
	}
}

// firstRoute opens a delta ADS stream with a grpc-go client (which accepts gzip: the codec is linked), asks
// for TopicTest's route and returns what the client saw of the response.
func firstRoute(t *testing.T, addr string) (*discovery.DeltaDiscoveryResponse, *payloads) {
	t.Helper()
	p := &payloads{}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithStatsHandler(p))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	st, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: translate.RouteType, ResourceNamesSubscribe: []string{"TopicTest"}}); err != nil {
		t.Fatal(err)
	}
	resp, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Resources) != 1 || resp.Resources[0].Name != "TopicTest" {
		t.Fatalf("response: %v", resp)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return resp, &payloads{compression: p.compression, wire: p.wire, plain: p.plain}
}

func TestResponsesCompressedForClientsThatAcceptGzip(t *testing.T) {
	s := startStack(t, embedded.LoadDemo)
	_, got := firstRoute(t, s.addr)
	if got.compression != "gzip" || got.wire <= 0 || got.wire >= got.plain {
		t.Fatalf("compression %q, %d B on the wire for %d B of response: want gzip and fewer bytes", got.compression, got.wire, got.plain)
	}
	t.Logf("route response: %d B on the wire, %d B of protobuf", got.wire, got.plain)

	plain := startStackWith(t, embedded.LoadDemo, Options{Compression: "none"})
	_, got = firstRoute(t, plain.addr)
	if got.compression != "" || got.wire != got.plain {
		t.Fatalf("with compression none: compression %q, %d B on the wire for %d B", got.compression, got.wire, got.plain)
	}
}

// TestClientNamingNoCompressorGetsPlainResponses speaks gRPC over raw HTTP/2 the way Envoy's own gRPC client
// does (Grpc::Common::prepareHeaders sends no grpc-accept-encoding): the response must not be compressed.
func TestClientNamingNoCompressorGetsPlainResponses(t *testing.T) {
	s := startStack(t, embedded.LoadDemo)
	h2 := &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}
	defer h2.CloseIdleConnections()
	req, err := proto.Marshal(&discovery.DeltaDiscoveryRequest{TypeUrl: translate.RouteType, ResourceNamesSubscribe: []string{"TopicTest"}})
	if err != nil {
		t.Fatal(err)
	}
	body, w := io.Pipe()
	defer w.Close()
	httpReq, err := http.NewRequestWithContext(t.Context(), http.MethodPost,
		"http://"+s.addr+"/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources", body)
	if err != nil {
		t.Fatal(err)
	}
	httpReq.Header.Set("content-type", "application/grpc")
	httpReq.Header.Set("te", "trailers")
	go func() {
		frame := binary.BigEndian.AppendUint32([]byte{0}, uint32(len(req))) // uncompressed, length
		w.Write(append(frame, req...))                                      // the stream stays open: a subscription
	}()
	httpResp, err := h2.RoundTrip(httpReq)
	if err != nil {
		t.Fatal(err)
	}
	defer httpResp.Body.Close()
	if enc := httpResp.Header.Get("grpc-encoding"); enc != "" && enc != "identity" {
		t.Fatalf("grpc-encoding %q to a client that accepts none", enc)
	}
	head := make([]byte, 5)
	if _, err := io.ReadFull(httpResp.Body, head); err != nil {
		t.Fatalf("reading the response frame (headers %v): %v", httpResp.Header, err)
	}
	if head[0] != 0 {
		t.Fatalf("response message has the compressed flag set (%d)", head[0])
	}
	msg := make([]byte, binary.BigEndian.Uint32(head[1:]))
	if _, err := io.ReadFull(httpResp.Body, msg); err != nil {
		t.Fatal(err)
	}
	var resp discovery.DeltaDiscoveryResponse
	if err := proto.Unmarshal(msg, &resp); err != nil || len(resp.Resources) != 1 || resp.Resources[0].Name != "TopicTest" {
		t.Fatalf("plain response: %v (%v)", &resp, err)
	}
	if !bytes.Contains(resp.Resources[0].Resource.Value, []byte("TopicTest")) {
		t.Fatal("route body does not name its topic")
	}
}
