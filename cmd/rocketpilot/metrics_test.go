package main

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/rocketpilot/rocketpilot/crds/v1alpha1"
	"github.com/rocketpilot/rocketpilot/internal/kubetest"
	"github.com/rocketpilot/rocketpilot/internal/promtest"
	"github.com/rocketpilot/rocketpilot/nameserver/embedded"
	"github.com/rocketpilot/rocketpilot/remoting"
	"github.com/rocketpilot/rocketpilot/simbroker"
	"github.com/rocketpilot/rocketpilot/xds/sidecar"
	"github.com/rocketpilot/rocketpilot/xds/translate"
)

// TestMetrics scrapes /metrics of a run over the demo topics with the Kubernetes controllers (envtest) while a Go sidecar
// resolves a topic, the topic's route changes, a raw client NACKs a response and a NameServerSource names a
// NameServer that is down; every metric family the operations guide lists is there, with values that follow.
func TestMetrics(t *testing.T) {
	env := kubetest.StartT(t)
	k8s := kubetest.Client(t, env)
	ns := demoNameServer(t)
	for name, addr := range map[string]string{"live": ns.Addr(), "down": "127.0.0.1:1"} {
		nss := &v1alpha1.NameServerSource{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
			Spec: v1alpha1.NameServerSourceSpec{Addresses: []string{addr}}}
		if err := k8s.Create(context.Background(), nss); err != nil {
			t.Fatal(err)
		}
	}
	p := serveInProcess(t, "--namesrv", ns.Addr(), "--kubernetes", "--kubeconfig", kubetest.Kubeconfig(t, env),
		"--leader-election-namespace", "default", "--leader-election-retry-period", "200ms", "--poll-interval", "200ms",
		"--broker-poll-interval", "200ms", "--initial-sync-timeout", "3s", "--metrics-address", "127.0.0.1:0", "--coalesce-window", "10ms")
	xdsAddr := p.addr(t, "serving xDS", 30*time.Second)
	metricsAddr := p.addr(t, "serving metrics", time.Second)

	_, ctx := sidecarResolving(t, xdsAddr, sidecar.Options{NodeID: "metrics-sidecar",
		DialOptions: []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}})
	nackOnce(t, ctx, xdsAddr)
	// A change the sidecar subscribes to: a push, timed.
	if err := ns.SetPerm(embedded.DemoTopic, "broker-b", remoting.PermRead); err != nil {
		t.Fatal(err)
	}

	var fams map[string]*dto.MetricFamily
	deadline := time.Now().Add(20 * time.Second)
	for {
		fams = scrape(t, "http://"+metricsAddr+"/metrics")
		if promtest.Sum(fams, "rocketpilot_xds_push_duration_seconds", map[string]string{"type": "rocketmq_route"}) > 0 &&
			promtest.Sum(fams, "rocketpilot_nameserver_request_errors_total", map[string]string{"source": "nss:default/down"}) > 0 &&
			promtest.Sum(fams, "rocketpilot_leader", nil) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics never showed the push, the NameServer errors and leadership:\n%s", dumpFamilies(fams))
		}
		time.Sleep(100 * time.Millisecond)
	}
	checkSeries(t, fams, []wantSeries{
		{"rocketpilot_xds_streams", map[string]string{"type": "rocketmq_route", "protocol": "delta"}, 2, 2}, // the sidecar and the NACKing client
		{"rocketpilot_xds_streams", map[string]string{"type": "cluster", "protocol": "sotw"}, 0, 0},
		{"rocketpilot_xds_pushes_total", map[string]string{"type": "rocketmq_route", "trigger": "request"}, 2, 100},
		{"rocketpilot_xds_pushes_total", map[string]string{"type": "rocketmq_route", "trigger": "change"}, 1, 100},
		{"rocketpilot_xds_sent_bytes_total", map[string]string{"type": "rocketmq_route"}, 100, 1e6},
		{"rocketpilot_xds_sent_bytes_total", map[string]string{"type": "endpoint"}, 100, 1e6},
		{"rocketpilot_xds_received_bytes_total", map[string]string{"type": "rocketmq_route"}, 10, 1e6},
		{"rocketpilot_xds_nacks_total", map[string]string{"type": "rocketmq_route"}, 1, 1},
		{"rocketpilot_xds_nacks_total", map[string]string{"type": "cluster"}, 0, 0},
		{"rocketpilot_xds_push_duration_seconds", map[string]string{"type": "rocketmq_route"}, 1, 100},
		{"rocketpilot_xds_resources", map[string]string{"type": "cluster"}, 4, 1000},
		{"rocketpilot_xds_resources", map[string]string{"type": "rocketmq_route"}, 1, 2},
		{"rocketpilot_xds_nodes", nil, 2, 2},
		{"rocketpilot_xds_stream_admissions_total", map[string]string{"result": "admitted"}, 2, 2},
		{"rocketpilot_xds_stream_admissions_total", map[string]string{"result": "rejected"}, 0, 0},
		{"rocketpilot_xds_stream_admission_wait_seconds", nil, 2, 2},
		{"rocketpilot_nameserver_request_duration_seconds", map[string]string{"source": "namesrv", "request": "route"}, 100, 1e6},
		{"rocketpilot_nameserver_request_duration_seconds", map[string]string{"source": "nss:default/live", "request": "brokers"}, 1, 1e6},
		{"rocketpilot_nameserver_request_errors_total", map[string]string{"source": "nss:default/live"}, 0, 0},
		{"rocketpilot_nameserver_request_errors_total", map[string]string{"source": "nss:default/down", "request": "brokers"}, 1, 1e6},
		{"rocketpilot_nameserver_topics", map[string]string{"source": "namesrv"}, float64(ns.TopicCount()), float64(ns.TopicCount())},
		{"rocketpilot_nameserver_topics", map[string]string{"source": "nss:default/live"}, float64(ns.TopicCount()), float64(ns.TopicCount())},
		{"rocketpilot_nameserver_brokers", map[string]string{"source": "nss:default/live"}, 4, 4},
		{"rocketpilot_nameserver_up", map[string]string{"source": "nss:default/live"}, 1, 1},
		{"rocketpilot_nameserver_up", map[string]string{"source": "nss:default/down"}, 0, 0},
		{"rocketpilot_nameserver_synced", map[string]string{"source": "nss:default/live"}, 1, 1},
		{"rocketpilot_reconcile_errors_total", map[string]string{"kind": "nameserversource"}, 0, 0},
		{"rocketpilot_reconcile_errors_total", map[string]string{"kind": "topicroute"}, 0, 0},
		{"rocketpilot_leader", nil, 1, 1},
		{"rocketpilot_peer_followers", nil, 0, 0}, // polling not shared: no replica follows this one
		{"rocketpilot_peer_following", nil, 0, 0},
		{"rocketpilot_peer_leader_connected", nil, 0, 0},
		{"rocketpilot_build_info", nil, 1, 1},
		{"controller_runtime_reconcile_total", map[string]string{"controller": "nameserversource"}, 2, 1e6},
		{"go_goroutines", nil, 10, 1e6},
	})
	// The admin port serves the API but not the metrics when they have a port of their own.
	resp, err := http.Get("http://" + p.addr(t, "serving the admin API", time.Second) + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close() // an unclosed body keeps its connection, and two goroutines, after the test (leakcheck)
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("/metrics on the admin port with --metrics-address: %v", resp.Status)
	}
	if t.Failed() {
		t.Log(dumpFamilies(fams))
	}
	if logs := p.logs.String(); strings.Contains(logs, "metrics gather failed") {
		t.Errorf("a scrape had gather errors:\n%s", logs)
	}

	// Stopping releases the Lease at once, for the next replica to take without waiting for it to expire.
	if err := p.stop(); err != nil {
		t.Fatal(err)
	}
	var lease coordinationv1.Lease
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: "default", Name: "rocketpilot-leader"}, &lease); err != nil {
		t.Fatal(err)
	}
	if h := lease.Spec.HolderIdentity; h != nil && *h != "" {
		t.Errorf("after serve stopped, the Lease is still held by %q", *h)
	}
}

// nackOnce opens a delta stream, asks for the demo topic's route and rejects the response.
func nackOnce(t *testing.T, ctx context.Context, addr string) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	st, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&discovery.DeltaDiscoveryRequest{Node: &corev3.Node{Id: "nacking-client"}, TypeUrl: translate.RouteType,
		ResourceNamesSubscribe: []string{embedded.DemoTopic}}); err != nil {
		t.Fatal(err)
	}
	resp, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: translate.RouteType, ResponseNonce: resp.Nonce,
		ErrorDetail: &statuspb.Status{Code: 3, Message: "test rejects it"}}); err != nil {
		t.Fatal(err)
	}
}

// wantSeries is a family's series carrying labels, whose sum must lie in min..max.
type wantSeries struct {
	family   string
	labels   map[string]string
	min, max float64
}

// checkSeries checks that each family is in the scrape and that its series add up to what is wanted.
func checkSeries(t *testing.T, fams map[string]*dto.MetricFamily, wants []wantSeries) {
	t.Helper()
	for _, c := range wants {
		if _, ok := fams[c.family]; !ok {
			t.Errorf("no family %s", c.family)
			continue
		}
		if v := promtest.Sum(fams, c.family, c.labels); v < c.min || v > c.max {
			t.Errorf("%s%v = %v, want %v..%v", c.family, c.labels, v, c.min, c.max)
		}
	}
}

func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp := getOK(t, url)
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse %s: %v", url, err)
	}
	return fams
}

func dumpFamilies(fams map[string]*dto.MetricFamily) string {
	var b strings.Builder
	for name, f := range fams {
		if !strings.HasPrefix(name, "rocketpilot_") {
			continue
		}
		for _, m := range f.GetMetric() {
			b.WriteString(name)
			for _, l := range m.GetLabel() {
				b.WriteString(" " + l.GetName() + "=" + l.GetValue())
			}
			b.WriteString(" " + strings.TrimSpace(strings.ReplaceAll(m.String(), "\n", " ")) + "\n")
		}
	}
	return b.String()
}

// TestMetricsDemo scrapes the admin port's /metrics of `serve --demo`, as `make run` starts it: the model's
// resources, the demo NameServer's topics and brokers, and answered requests are there from the first sync.
func TestMetricsDemo(t *testing.T) {
	p := serveInProcess(t, "--demo", "--demo-namesrv-address", "127.0.0.1:0")
	p.waitLog(t, "serving xDS", 10*time.Second)
	fams := scrape(t, "http://"+p.addr(t, "serving the admin API", time.Second)+"/metrics")
	// The demo brokers' topics, and the cluster's and each group's own topic, which every broker registers.
	topics := map[string]bool{simbroker.DemoCluster: true}
	for group, configs := range simbroker.DemoTopics(2, 0) {
		topics[group] = true
		for _, c := range configs {
			topics[c.TopicName] = true
		}
	}
	checkSeries(t, fams, []wantSeries{
		{"rocketpilot_nameserver_topics", map[string]string{"source": "namesrv"}, float64(len(topics)), float64(len(topics))},
		// The demo's simulated broker groups, broker-a and broker-b, registered with the demo NameServer.
		{"rocketpilot_nameserver_brokers", map[string]string{"source": "namesrv"}, 2, 2},
		{"rocketpilot_nameserver_up", map[string]string{"source": "namesrv"}, 1, 1},
		{"rocketpilot_nameserver_request_duration_seconds", map[string]string{"request": "route"}, float64(len(topics)), 1e6},
		{"rocketpilot_xds_resources", map[string]string{"type": "cluster"}, 4, 100},
		{"rocketpilot_xds_streams", nil, 0, 0},
		{"rocketpilot_leader", nil, 0, 0}, // no Kubernetes: this replica writes no status
		{"rocketpilot_reconcile_errors_total", nil, 0, 0},
	})
	if logs := p.logs.String(); strings.Contains(logs, "metrics gather failed") {
		t.Errorf("a scrape had gather errors:\n%s", logs)
	}
}

// sidecarResolving dials a Go sidecar client to addr and resolves the demo topic through it; the client and its
// context (20 s) end with the test.
func sidecarResolving(t *testing.T, addr string, opts sidecar.Options) (*sidecar.Client, context.Context) {
	t.Helper()
	sc, err := sidecar.Dial(addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sc.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	if _, err := sc.Resolve(ctx, embedded.DemoTopic); err != nil {
		t.Fatal(err)
	}
	return sc, ctx
}
