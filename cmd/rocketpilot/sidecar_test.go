package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rocketpilot/rocketpilot/dataplane"
	"github.com/rocketpilot/rocketpilot/internal/certtest"
	"github.com/rocketpilot/rocketpilot/internal/sidecaradmin"
	"github.com/rocketpilot/rocketpilot/remoting"
	"github.com/rocketpilot/rocketpilot/xds/server"
)

// sidecarInProcess is `rocketpilot sidecar` run in process on loopback ports, with JSON logs.
func sidecarInProcess(t *testing.T, args ...string) *inProcess {
	t.Helper()
	p := &inProcess{stopped: make(chan struct{})}
	root := newRootCommand()
	root.SetArgs(append([]string{"sidecar", "--listen", "127.0.0.1:0", "--admin-address", "127.0.0.1:0",
		"--log-format", "json", "--drain-timeout", "2s"}, args...))
	root.SetErr(&p.logs)
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	go func() { p.err = root.ExecuteContext(ctx); close(p.stopped) }()
	t.Cleanup(func() { p.stop() })
	return p
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// call sends one request on a new connection and reads its answer.
func call(t *testing.T, addr string, code int32, ext map[string]string, body []byte) *remoting.Command {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	req := remoting.NewRequest(code, ext)
	req.Opaque, req.Body = 1, body
	frame, err := remoting.Encode(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nc.Write(frame); err != nil {
		t.Fatal(err)
	}
	resp, err := remoting.NewReader(nc, 0).Read()
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// TestSidecarCommand runs `serve --demo` and `rocketpilot sidecar` following it: a route query through the
// sidecar names the sidecar's own ports, a send to one is stored by the demo broker, /readyz, /metrics and
// /api/v1/sidecar show the sidecar ready with one route held (the latter with its groups at the route's ports), and
// the sidecar drains and stops when its context ends.
func TestSidecarCommand(t *testing.T) {
	cp := serveInProcess(t, "--demo", "--demo-namesrv-address", "127.0.0.1:0")
	xds := cp.addr(t, "serving xDS", 10*time.Second)
	sc := sidecarInProcess(t, "--xds-server", xds, "--node-id", "sidecar-test")
	namesrv := sc.addr(t, "sidecar running", 5*time.Second)
	admin := "http://" + sc.addr(t, "sidecar admin listening", time.Second)

	r := call(t, namesrv, remoting.GetRouteInfoByTopic, map[string]string{"topic": "TopicTest"}, nil)
	if r.Code != remoting.Success {
		t.Fatalf("route through the sidecar: %d %s", r.Code, r.Remark)
	}
	route, err := remoting.DecodeTopicRouteData(r.Body)
	if err != nil || len(route.BrokerDatas) != 2 {
		t.Fatalf("route %+v, %v", route, err)
	}
	port := route.BrokerDatas[0].BrokerAddrs[0]
	host, _, _ := net.SplitHostPort(port)
	if host != "127.0.0.1" {
		t.Fatalf("broker group at %s, want a loopback port of the sidecar", port)
	}
	send := call(t, port, remoting.SendMessageV2, map[string]string{"a": "pg", "b": "TopicTest", "e": "0", "f": "0",
		"g": "0", "h": "0", "i": "", "j": "0"}, []byte("through the sidecar command"))
	if send.Code != remoting.Success {
		t.Fatalf("send through the sidecar: %d %s", send.Code, send.Remark)
	}
	if code, body := httpGet(t, admin+"/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz: %d %s", code, body)
	}
	_, metrics := httpGet(t, admin+"/metrics")
	for _, want := range []string{"rocketpilot_sidecar_routes 1", `rocketpilot_sidecar_requests_total{code="310",result="success"} 1`,
		"rocketpilot_sidecar_xds_connected 1"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics has no %q", want)
		}
	}
	checkSidecarStatus(t, admin, sidecaradmin.Sidecar{Node: "sidecar-test", XDSServer: xds, Ready: true, Connected: true,
		Streams: 1, Listen: namesrv, Routes: 1, Version: version, Pop: []dataplane.PopStats{},
		Groups: []sidecaradmin.Group{{Name: route.BrokerDatas[0].BrokerName, Address: port}, {Name: route.BrokerDatas[1].BrokerName,
			Address: route.BrokerDatas[1].BrokerAddrs[0]}}})
	if err := sc.stop(); err != nil {
		t.Fatalf("sidecar: %v", err)
	}
	sc.waitLogAfterStop(t, "sidecar stopped")
}

// checkSidecarStatus compares GET /api/v1/sidecar with want, and checks that other paths under /api/v1/ are
// answered 404 with a JSON error body.
func checkSidecarStatus(t *testing.T, admin string, want sidecaradmin.Sidecar) {
	t.Helper()
	code, body := httpGet(t, admin+sidecaradmin.Path)
	var got sidecaradmin.Sidecar
	if err := json.Unmarshal([]byte(body), &got); code != http.StatusOK || err != nil {
		t.Fatalf("%s: %d %v\n%s", sidecaradmin.Path, code, err, body)
	}
	slices.SortFunc(want.Groups, func(a, b sidecaradmin.Group) int { return strings.Compare(a.Name, b.Name) })
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\n%s\nwant %+v", sidecaradmin.Path, body, want)
	}
	code, body = httpGet(t, admin+"/api/v1/topics")
	var e server.ErrorBody
	if err := json.Unmarshal([]byte(body), &e); code != http.StatusNotFound || err != nil || !strings.Contains(e.Error, sidecaradmin.Path) {
		t.Errorf("/api/v1/topics on a sidecar: %d %s", code, body)
	}
}

// waitLogAfterStop checks a stopped process logged msg.
func (p *inProcess) waitLogAfterStop(t *testing.T, msg string) {
	t.Helper()
	if !strings.Contains(p.logs.String(), `"msg":"`+msg+`"`) {
		t.Fatalf("no %q in the logs:\n%s", msg, p.logs.String())
	}
}

// The sidecar sends its namespace and labels as node metadata (from flags and a downward API labels file), so a
// TopicBinding's pod selector gives it its scope (the bound topics, as the admin API shows). Topics it asks for by
// name are served whatever its scope, as to any on-demand client.
func TestSidecarScopedByPodSelector(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "binding.yaml"), []byte(`apiVersion: rocketpilot.io/v1alpha1
kind: TopicBinding
metadata: {name: orders, namespace: shop}
spec:
  podSelector: {matchLabels: {app: orders, tier: backend}}
  topics: [TopicTest]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	labels := filepath.Join(dir, "labels")
	if err := os.WriteFile(labels, []byte("app=\"orders\"\npod-template-hash=\"7f9c\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cp := serveInProcess(t, "--demo", "--demo-namesrv-address", "127.0.0.1:0", "--config", dir)
	xds := cp.addr(t, "serving xDS", 10*time.Second)
	sc := sidecarInProcess(t, "--xds-server", xds, "--node-id", "orders-1", "--namespace", "shop",
		"--labels-file", labels, "--labels", "tier=backend")
	namesrv := sc.addr(t, "sidecar running", 5*time.Second)
	if r := call(t, namesrv, remoting.GetRouteInfoByTopic, map[string]string{"topic": "TopicTest"}, nil); r.Code != remoting.Success {
		t.Fatalf("the bound topic: %d %s", r.Code, r.Remark)
	}
	if r := call(t, namesrv, remoting.GetRouteInfoByTopic, map[string]string{"topic": "demo-orders-002"}, nil); r.Code != remoting.Success {
		t.Fatalf("a topic asked for by name: %d %s", r.Code, r.Remark)
	}
	_, body := httpGet(t, "http://"+cp.addr(t, "serving the admin API", time.Second)+"/api/v1/proxies")
	var streams []struct {
		Node  string   `json:"node"`
		Scope []string `json:"scope"`
	}
	if err := json.Unmarshal([]byte(body), &streams); err != nil {
		t.Fatalf("/api/v1/proxies: %v: %s", err, body)
	}
	if len(streams) != 1 || streams[0].Node != "orders-1" || !slices.Equal(streams[0].Scope, []string{"TopicTest"}) {
		t.Fatalf("the sidecar's stream: %s, want node orders-1 with scope [TopicTest]", body)
	}
}

// A labels file that is not the downward API's format is refused with its line.
func TestSidecarLabelsFileErrors(t *testing.T) {
	f := filepath.Join(t.TempDir(), "labels")
	if err := os.WriteFile(f, []byte("app=orders\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := (&sidecarOptions{labelsFile: f}).metadata()
	if err == nil || !strings.Contains(err.Error(), ":1:") {
		t.Fatalf("metadata: %v", err)
	}
}

// Against a control plane serving mutual TLS, the sidecar with a client certificate is served (a route through
// it); one without a certificate never gets a stream, and stays not ready.
func TestSidecarMutualTLS(t *testing.T) {
	s := newTLSSetup(t)
	cp := serveInProcess(t, "--demo", "--demo-namesrv-address", "127.0.0.1:0", "--tls-cert", s.cert, "--tls-key", s.key,
		"--tls-client-ca", s.caFile)
	xds := cp.addr(t, "serving xDS", 10*time.Second)

	// The certificate `rocketctl kube-inject` gives a pod: its namespace's service account, which names every node
	// id NAME.NAMESPACE in that namespace (--xds-identity-check is on by default under mutual TLS).
	pod := s.ca.Workload(t, "orders", "spiffe://cluster.local/ns/team-a/sa/orders")
	files := certtest.Write(t, s.dir, "pod.crt", pod.Cert, "pod.key", pod.Key)
	good := sidecarInProcess(t, "--xds-server", xds, "--tls-ca", s.caFile, "--tls-cert", files[0], "--tls-key", files[1],
		"--node-id", "orders-1.team-a", "--namespace", "team-a")
	namesrv := good.addr(t, "sidecar running", 5*time.Second)
	if r := call(t, namesrv, remoting.GetRouteInfoByTopic, map[string]string{"topic": "TopicTest"}, nil); r.Code != remoting.Success {
		t.Fatalf("route through the sidecar over mutual TLS: %d %s", r.Code, r.Remark)
	}

	anonymous := sidecarInProcess(t, "--xds-server", xds, "--tls-ca", s.caFile)
	admin := "http://" + anonymous.addr(t, "sidecar admin listening", 5*time.Second)
	time.Sleep(300 * time.Millisecond) // room for a stream, were one allowed
	if code, body := httpGet(t, admin+"/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("a sidecar without a client certificate is ready: %d %s", code, body)
	}
}
