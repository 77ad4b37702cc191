package main

import (
	"context"
	"crypto/tls"
	"io"
	"math/big"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/rocketpilot/rocketpilot/internal/certtest"
	"github.com/rocketpilot/rocketpilot/internal/tlsreload"
	"github.com/rocketpilot/rocketpilot/nameserver/embedded"
	"github.com/rocketpilot/rocketpilot/xds/sidecar"
	"github.com/rocketpilot/rocketpilot/xds/translate"
)

// tlsSetup is a CA, rocketpilot's server certificate files and a client certificate.
type tlsSetup struct {
	dir                   string
	ca                    *certtest.CA
	caFile, cert, key     string
	clientCert, clientKey string
}

func newTLSSetup(t *testing.T) *tlsSetup {
	dir := t.TempDir()
	ca := certtest.NewCA(t, "test-ca")
	srv, cli := ca.Server(t, "rocketpilot"), ca.Client(t, "operator")
	files := certtest.Write(t, dir, "ca.crt", ca.PEM, "tls.crt", srv.Cert, "tls.key", srv.Key, "client.crt", cli.Cert, "client.key", cli.Key)
	return &tlsSetup{dir: dir, ca: ca, caFile: files[0], cert: files[1], key: files[2], clientCert: files[3], clientKey: files[4]}
}

func (s *tlsSetup) clientConfig(t *testing.T, withCert bool) *tls.Config {
	t.Helper()
	cert, key := "", ""
	if withCert {
		cert, key = s.clientCert, s.clientKey
	}
	cfg, err := tlsreload.ClientConfig(s.caFile, cert, key, "")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestServeMutualTLS serves xDS and the admin API with mutual TLS: a client with a certificate from the client CA
// resolves a topic, one without a certificate and a plaintext one are refused, the admin API opens its probes
// to anyone and the rest to authenticated clients only, and a rotated server certificate is served without a
// restart while an open stream goes on.
func TestServeMutualTLS(t *testing.T) {
	s := newTLSSetup(t)
	p := serveInProcess(t, "--demo", "--demo-namesrv-address", "127.0.0.1:0", "--tls-cert", s.cert, "--tls-key", s.key,
		"--tls-client-ca", s.caFile, "--tls-reload-interval", "50ms", "--pprof", "--admin-operators", "operator")
	xdsAddr, adminAddr := p.addr(t, "serving xDS", 10*time.Second), p.addr(t, "serving the admin API", time.Second)

	// A client with a certificate that names its node: a stream works.
	nodeCfg := s.clientConfig(t, false)
	nodePair := s.ca.Workload(t, "mtls-sidecar", "mtls-sidecar")
	nodeCert, err := tls.X509KeyPair(nodePair.Cert, nodePair.Key)
	if err != nil {
		t.Fatal(err)
	}
	nodeCfg.Certificates = []tls.Certificate{nodeCert}
	sc, err := sidecar.Dial(xdsAddr, sidecar.Options{NodeID: "mtls-sidecar",
		DialOptions: []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(nodeCfg))}})
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	route, err := sc.Resolve(ctx, embedded.DemoTopic)
	if err != nil {
		t.Fatalf("resolve over mutual TLS: %v\n%s", err, p.logs.String())
	}
	if len(route.BrokerDatas) != 2 {
		t.Fatalf("route over mutual TLS: %+v", route)
	}

	// Without a client certificate, in plaintext, or with a certificate that names another node (the operator's,
	// for node "x"): no stream.
	for name, creds := range map[string]credentials.TransportCredentials{
		"no client certificate":                 credentials.NewTLS(s.clientConfig(t, false)),
		"plaintext":                             insecure.NewCredentials(),
		"a certificate naming another node":     credentials.NewTLS(s.clientConfig(t, true)),
		"a node's certificate for another node": credentials.NewTLS(nodeCfg),
	} {
		if err := openStream(xdsAddr, creds); err == nil {
			t.Errorf("%s: the xDS stream was served", name)
		} else {
			t.Logf("%s: refused: %v", name, err)
		}
	}

	// The admin API: probes open, the rest needs the client certificate; plaintext gets no answer from it.
	anon := &http.Client{Transport: &http.Transport{TLSClientConfig: s.clientConfig(t, false)}}
	authed := &http.Client{Transport: &http.Transport{TLSClientConfig: s.clientConfig(t, true)}}
	// A sidecar's certificate comes from the same CA: it reads the API, but is no operator.
	sidecarPair := s.ca.Client(t, "orders-sidecar")
	sidecarCfg := s.clientConfig(t, false)
	sidecarCert, err := tls.X509KeyPair(sidecarPair.Cert, sidecarPair.Key)
	if err != nil {
		t.Fatal(err)
	}
	sidecarCfg.Certificates = []tls.Certificate{sidecarCert}
	sidecarClient := &http.Client{Transport: &http.Transport{TLSClientConfig: sidecarCfg}}
	// A workload's certificate, as the workload CA issues any service account: xDS only.
	workloadPair := s.ca.Workload(t, "operator", "spiffe://cluster.local/ns/team-a/sa/orders")
	workloadCfg := s.clientConfig(t, false)
	workloadCert, err := tls.X509KeyPair(workloadPair.Cert, workloadPair.Key)
	if err != nil {
		t.Fatal(err)
	}
	workloadCfg.Certificates = []tls.Certificate{workloadCert}
	workloadClient := &http.Client{Transport: &http.Transport{TLSClientConfig: workloadCfg}}
	for _, c := range []*http.Client{anon, authed, sidecarClient, workloadClient} {
		defer c.CloseIdleConnections()
	}
	for _, c := range []struct {
		client       *http.Client
		method, path string
		body         string
		want         int
	}{
		{anon, "GET", "/readyz", "", http.StatusOK},
		{anon, "GET", "/healthz", "", http.StatusOK},
		{anon, "GET", "/metrics", "", http.StatusOK},
		{anon, "GET", "/api/v1/topics", "", http.StatusUnauthorized},
		{anon, "GET", "/", "", http.StatusUnauthorized}, // the dashboard: the admin API's rules
		{anon, "GET", "/ui/events", "", http.StatusUnauthorized},
		{anon, "GET", "/ui/static/style.css", "", http.StatusUnauthorized},
		{anon, "GET", "/debug/pprof/", "", http.StatusUnauthorized},
		{anon, "PUT", "/debug/log-level", "debug", http.StatusUnauthorized},
		{sidecarClient, "GET", "/api/v1/topics/" + embedded.DemoTopic, "", http.StatusOK},
		{sidecarClient, "PUT", "/debug/log-level", "debug", http.StatusForbidden},
		{sidecarClient, "GET", "/debug/pprof/", "", http.StatusForbidden},
		{authed, "GET", "/api/v1/topics/" + embedded.DemoTopic, "", http.StatusOK},
		{workloadClient, "GET", "/api/v1/topics/" + embedded.DemoTopic, "", http.StatusForbidden}, // its common name is an operator's: no matter
		{workloadClient, "GET", "/", "", http.StatusForbidden},
		{workloadClient, "PUT", "/debug/log-level", "debug", http.StatusForbidden},
		{workloadClient, "GET", "/readyz", "", http.StatusOK},
		{sidecarClient, "GET", "/topics/" + embedded.DemoTopic, "", http.StatusOK},
		{sidecarClient, "POST", "/topics", "", http.StatusForbidden}, // a write: only operators pass the guard
		{authed, "POST", "/topics", "", http.StatusMethodNotAllowed}, // and the dashboard never writes
		{authed, "GET", "/debug/pprof/", "", http.StatusOK},
		{authed, "PUT", "/debug/log-level", "loud", http.StatusBadRequest},
		{authed, "PUT", "/debug/log-level", "debug", http.StatusOK},
	} {
		req, _ := http.NewRequest(c.method, "https://"+adminAddr+c.path, strings.NewReader(c.body))
		resp, err := c.client.Do(req)
		if err != nil {
			t.Errorf("%s %s: %v", c.method, c.path, err)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s %s (client certificate: %v): %s %s, want %d", c.method, c.path, c.client == authed, resp.Status, body, c.want)
		}
	}
	p.waitLog(t, "log level changed", time.Second)
	if resp, err := http.Get("http://" + adminAddr + "/readyz"); err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Errorf("plaintext /readyz answered %s %s", resp.Status, body)
		}
	}

	// Rotation: a new server certificate is picked up by new handshakes; the open stream goes on.
	before := serverSerial(t, xdsAddr, s.clientConfig(t, true))
	next := s.ca.Server(t, "rocketpilot-rotated")
	certtest.Write(t, s.dir, "tls.key", next.Key, "tls.crt", next.Cert)
	deadline := time.Now().Add(10 * time.Second)
	for serverSerial(t, xdsAddr, s.clientConfig(t, true)).Cmp(next.Serial) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the rotated certificate (serial %v) was never served; still %v", next.Serial, before)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if serverSerial(t, adminAddr, s.clientConfig(t, true)).Cmp(next.Serial) != 0 {
		t.Errorf("the admin port still serves the old certificate")
	}
	p.waitLog(t, "TLS certificate reloaded", time.Second)
	if _, err := sc.Resolve(ctx, "demo-orders-001"); err != nil {
		t.Fatalf("the stream opened before the rotation: %v", err)
	}

	// A key that does not match its certificate is not loaded: the last good pair keeps serving. (The rotation
	// above wrote the key before the certificate, so the reloader may have seen that half-written pair already:
	// wait for a new rejection.)
	const rejected = `"msg":"TLS files changed but do not load; keeping the last good ones"`
	rejections := strings.Count(p.logs.String(), rejected)
	certtest.Write(t, s.dir, "tls.key", s.ca.Server(t, "other").Key)
	for deadline := time.Now().Add(5 * time.Second); strings.Count(p.logs.String(), rejected) == rejections; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the mismatched key was not rejected")
		}
	}
	if serverSerial(t, xdsAddr, s.clientConfig(t, true)).Cmp(next.Serial) != 0 {
		t.Errorf("a broken key pair replaced the good one")
	}
}

// TestServeDebugNeedsAuthentication: without a client CA, the admin API's debug and write endpoints are refused.
func TestServeDebugNeedsAuthentication(t *testing.T) {
	p := serveInProcess(t, "--demo", "--demo-namesrv-address", "127.0.0.1:0", "--pprof")
	admin := p.addr(t, "serving the admin API", 10*time.Second)
	for _, c := range []struct{ method, path string }{{"GET", "/debug/pprof/"}, {"PUT", "/debug/log-level"}, {"GET", "/debug/log-level"}, {"POST", "/api/v1/topics"}} {
		req, _ := http.NewRequest(c.method, "http://"+admin+c.path, strings.NewReader("debug"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "--tls-client-ca") {
			t.Errorf("%s %s without TLS: %s %s", c.method, c.path, resp.Status, body)
		}
	}
	getJSON(t, "http://"+admin+"/api/v1/topics", &map[string]any{}) // the read-only API stays open
}

// openStream opens a delta ADS stream and waits for the first answer.
func openStream(addr string, creds credentials.TransportCredentials) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	st, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		return err
	}
	if err := st.Send(&discovery.DeltaDiscoveryRequest{Node: &corev3.Node{Id: "x"}, TypeUrl: translate.RouteType,
		ResourceNamesSubscribe: []string{embedded.DemoTopic}}); err != nil {
		return err
	}
	_, err = st.Recv()
	return err
}

// serverSerial handshakes with addr and returns the serial number of the certificate it presents.
func serverSerial(t *testing.T, addr string, cfg *tls.Config) *big.Int {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 3 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber
}
