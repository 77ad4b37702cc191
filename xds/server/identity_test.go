package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/rocketpilot/rocketpilot/internal/certtest"
	"github.com/rocketpilot/rocketpilot/internal/promtest"
	"github.com/rocketpilot/rocketpilot/nameserver/embedded"
	"github.com/rocketpilot/rocketpilot/workloadca"
	"github.com/rocketpilot/rocketpilot/xds/cache"
	"github.com/rocketpilot/rocketpilot/xds/translate"
)

func claimed(id, namespace string, labels ...string) *corev3.Node {
	n := &corev3.Node{Id: id, Metadata: &structpb.Struct{Fields: map[string]*structpb.Value{}}}
	if namespace != "" {
		n.Metadata.Fields[cache.MetadataNamespaceKey] = structpb.NewStringValue(namespace)
	}
	if len(labels) > 0 {
		l := map[string]any{}
		for i := 0; i+1 < len(labels); i += 2 {
			l[labels[i]] = labels[i+1]
		}
		v, _ := structpb.NewStruct(l)
		n.Metadata.Fields[cache.MetadataLabelsKey] = structpb.NewStructValue(v)
	}
	return n
}

func parseCert(t *testing.T, pair certtest.Pair) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(pair.Cert)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// Permits: each way a certificate names a node, and what it does not let the node claim.
func TestPermits(t *testing.T) {
	ca := certtest.NewCA(t, "test-ca")
	byNode := parseCert(t, ca.Workload(t, "a", "spiffe://cluster.local/ns/team-a/node/orders-1.team-a"))
	bySA := parseCert(t, ca.Workload(t, "a", "spiffe://cluster.local/ns/team-a/sa/orders"))
	byDNS := parseCert(t, ca.Workload(t, "a", "orders-1.team-a"))
	other := parseCert(t, ca.Workload(t, "a", "https://example.com/ns/team-a/node/orders-1.team-a", "spiffe://td/ns/team-a/node"))
	// The workload CA's certificate for a pod: its node and its labels.
	pod := parseCert(t, ca.Workload(t, "a", "spiffe://cluster.local/ns/team-a/node/orders-1.team-a",
		workloadca.LabelsURI(map[string]string{"app": "orders", "app.kubernetes.io/part-of": "shop & co"}).String()))
	unlabelled := parseCert(t, ca.Workload(t, "a", "spiffe://cluster.local/ns/team-a/node/orders-1.team-a", workloadca.LabelsURI(nil).String()))
	for _, c := range []struct {
		name  string
		cert  *x509.Certificate
		node  *corev3.Node
		allow bool
	}{
		{"node URI, its node", byNode, claimed("orders-1.team-a", "team-a"), true},
		{"node URI, no namespace claimed (a strict binding of team-a would not select it)", byNode, claimed("orders-1.team-a", ""), false},
		{"node URI, another node", byNode, claimed("orders-2.team-a", "team-a"), false},
		{"node URI, another namespace", byNode, claimed("orders-1.team-a", "team-b"), false},
		{"service account URI, a node of its namespace", bySA, claimed("orders-7.team-a", "team-a"), true},
		{"service account URI, no namespace claimed", bySA, claimed("orders-7.team-a", ""), false},
		{"service account URI, a node id of another namespace", bySA, claimed("orders-7.team-b", "team-a"), false},
		{"service account URI, another namespace claimed", bySA, claimed("orders-7.team-a", "team-b"), false},
		{"service account URI, a node id without a name", bySA, claimed(".team-a", ""), false},
		{"DNS name, its node", byDNS, claimed("orders-1.team-a", "team-a"), true},
		{"DNS name, no namespace claimed", byDNS, claimed("orders-1.team-a", ""), true},
		{"DNS name, a namespace it does not end in", byDNS, claimed("orders-1.team-a", "team-b"), false},
		{"DNS name, another node", byDNS, claimed("orders-2.team-a", ""), false},
		{"neither a spiffe URI of the forms nor a DNS name", other, claimed("orders-1.team-a", ""), false},
		{"no certificate", nil, claimed("orders-1.team-a", ""), false},
		{"a pod's certificate, its labels", pod, claimed("orders-1.team-a", "team-a", "app", "orders", "app.kubernetes.io/part-of", "shop & co"), true},
		{"a pod's certificate, a label left out (to leave a selector)", pod, claimed("orders-1.team-a", "team-a", "app", "orders"), false},
		{"a pod's certificate, a label added (to enter one)", pod, claimed("orders-1.team-a", "team-a", "app", "orders", "app.kubernetes.io/part-of", "shop & co", "tier", "gold"), false},
		{"a pod's certificate, a label changed", pod, claimed("orders-1.team-a", "team-a", "app", "payments", "app.kubernetes.io/part-of", "shop & co"), false},
		{"a pod's certificate, no labels claimed", pod, claimed("orders-1.team-a", "team-a"), false},
		{"an unlabelled pod's certificate, no labels claimed", unlabelled, claimed("orders-1.team-a", "team-a"), true},
		{"an unlabelled pod's certificate, a label claimed", unlabelled, claimed("orders-1.team-a", "team-a", "app", "orders"), false},
	} {
		err := Permits(c.cert, c.node)
		if (err == nil) != c.allow {
			t.Errorf("%s: %v, want allowed %v", c.name, err, c.allow)
		}
		if err != nil && status.Code(err) != codes.PermissionDenied {
			t.Errorf("%s: %v, want PERMISSION_DENIED", c.name, err)
		}
	}
}

// Over a real mutual-TLS gRPC server: a client whose certificate names node A is served as A, and refused as B,
// whether it claims B at once or switches to B on an open stream; every refusal is counted.
func TestIdentityCheckOnStreams(t *testing.T) {
	s := startStack(t, embedded.LoadDemo)
	ca := certtest.NewCA(t, "test-ca")
	srv := ca.Server(t, "rocketpilot")
	serverCert, err := tls.X509KeyPair(srv.Cert, srv.Key)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.PEM)
	serverTLS := &tls.Config{Certificates: []tls.Certificate{serverCert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert}
	check := NewIdentityCheck(nil)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		serveGRPC(ctx, newGRPC(ctx, s.cache, check.callbacks(s.cache), Options{Creds: credentials.NewTLS(serverTLS)}), lis, time.Second)
		close(done)
	}()
	t.Cleanup(func() { cancel(); <-done })

	client := ca.Workload(t, "node-a", "spiffe://cluster.local/ns/team-a/node/node-a.team-a")
	clientCert, err := tls.X509KeyPair(client.Cert, client.Key)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(
		&tls.Config{RootCAs: pool, Certificates: []tls.Certificate{clientCert}, ServerName: "localhost"})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ads := discovery.NewAggregatedDiscoveryServiceClient(conn)
	open := func() discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesClient {
		t.Helper()
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		t.Cleanup(scancel)
		st, err := ads.DeltaAggregatedResources(sctx)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	ask := func(st discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesClient, n *corev3.Node) (*discovery.DeltaDiscoveryResponse, error) {
		if err := st.Send(&discovery.DeltaDiscoveryRequest{Node: n, TypeUrl: translate.RouteType,
			ResourceNamesSubscribe: []string{embedded.DemoTopic}}); err != nil {
			return nil, err
		}
		return st.Recv()
	}

	st := open()
	resp, err := ask(st, claimed("node-a.team-a", "team-a"))
	if err != nil || len(resp.GetResources()) != 1 {
		t.Fatalf("node A, as its certificate names it: %v %v", resp, err)
	}
	// A later request that leaves the node out speaks for A (go-control-plane fills it in after the check).
	if err := st.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: translate.RouteType, ResponseNonce: resp.GetNonce(),
		ResourceNamesSubscribe: []string{"demo-orders-001"}}); err != nil {
		t.Fatal(err)
	}
	if resp, err := st.Recv(); err != nil || len(resp.GetResources()) != 1 {
		t.Fatalf("a request without the node, after A's: %v %v", resp, err)
	}
	// The same stream, now claiming B.
	if _, err := ask(st, claimed("node-b.team-a", "team-a")); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("switching to node B on the stream: %v, want PERMISSION_DENIED", err)
	}
	// A new stream as B, and one as A in another namespace.
	for _, n := range []*corev3.Node{claimed("node-b.team-a", "team-a"), claimed("node-a.team-a", "team-b")} {
		resp, err := ask(open(), n)
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("node %s (namespace %s): %v %v, want PERMISSION_DENIED", n.Id, n.GetMetadata().GetFields()[cache.MetadataNamespaceKey].GetStringValue(), resp, err)
		}
		t.Logf("refused: %v", err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(check)
	if got := promtest.Sum(promtest.Families(t, reg), "rocketpilot_xds_identity_refused_total", nil); got != 3 {
		t.Fatalf("%v refusals counted, want 3", got)
	}
}
