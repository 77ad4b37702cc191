package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/rocketpilot/rocketpilot/internal/certtest"
	"github.com/rocketpilot/rocketpilot/internal/embeddedtest"
	"github.com/rocketpilot/rocketpilot/nameserver/client"
	"github.com/rocketpilot/rocketpilot/nameserver/embedded"
	"github.com/rocketpilot/rocketpilot/remoting"
	"github.com/rocketpilot/rocketpilot/xds/cache"
	"github.com/rocketpilot/rocketpilot/xds/server"
	"github.com/rocketpilot/rocketpilot/xds/sidecar"
	"github.com/rocketpilot/rocketpilot/xds/translate"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// rocketpilotBinary builds cmd/rocketpilot once for the test binary: the end-to-end tests run the real server as
// a process of its own.
func rocketpilotBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "rocketctl-e2e")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "rocketpilot")
		out, err := exec.Command("go", "build", "-o", binPath, "../rocketpilot").CombinedOutput()
		if err != nil {
			buildErr = err
			t.Logf("%s", out)
		}
	})
	if buildErr != nil {
		t.Fatalf("build rocketpilot: %v", buildErr)
	}
	return binPath
}

// served is a running `rocketpilot serve` and the addresses it logged.
type served struct {
	admin, xds, demo string
}

func startServe(t *testing.T, args ...string) served {
	t.Helper()
	args = append([]string{"serve", "--xds-address", "127.0.0.1:0", "--admin-address", "127.0.0.1:0", "--log-format", "json"}, args...)
	addrs := startLogged(t, args, "serving xDS", "serving the admin API", "demo NameServer listening")
	return served{admin: addrs["serving the admin API"], xds: addrs["serving xDS"], demo: addrs["demo NameServer listening"]}
}

// startLogged runs rocketpilot with args (JSON logs) until it logs until, and returns the addresses its log lines
// until and msgs named by then, by message. The process is interrupted when the test ends.
func startLogged(t *testing.T, args []string, until string, msgs ...string) map[string]string {
	t.Helper()
	cmd := exec.Command(rocketpilotBinary(t), args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
		}
	})
	addr := regexp.MustCompile(`"msg":"([^"]+)","addr":"([^"]+)"`)
	addrs := map[string]string{}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var logs []string
	deadline := time.After(60 * time.Second)
	for addrs[until] == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("%s exited:\n%s", args[0], strings.Join(logs, "\n"))
			}
			logs = append(logs, l)
			if m := addr.FindStringSubmatch(l); m != nil && (m[1] == until || slices.Contains(msgs, m[1])) {
				addrs[m[1]] = m[2]
			}
		case <-deadline:
			t.Fatalf("%s did not log %q within 60s:\n%s", args[0], until, strings.Join(logs, "\n"))
		}
	}
	go func() {
		for range lines { // keep draining the logs
		}
	}()
	return addrs
}

// ctl runs one rocketctl command line in process against a server.
func ctl(t *testing.T, s served, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	argv := append([]string{"rocketctl", "--server", s.admin, "--xds-server", s.xds}, args...)
	code = run(context.Background(), argv, &out, &errOut)
	return out.String(), errOut.String(), code
}

func mustCtl(t *testing.T, s served, args ...string) string {
	t.Helper()
	out, errOut, code := ctl(t, s, args...)
	if code != 0 {
		t.Fatalf("rocketctl %v: exit %d: %s", args, code, errOut)
	}
	return out
}

func TestEndToEndAgainstServeDemo(t *testing.T) {
	s := startServe(t, "--demo", "--demo-namesrv-address", "127.0.0.1:0")
	ns := client.New(s.demo, client.Options{})
	defer ns.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nsTopics, err := ns.GetAllTopicList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(nsTopics)

	// get topics -o json lists exactly the NameServer's topics.
	var topics []server.TopicSummary
	if err := json.Unmarshal([]byte(mustCtl(t, s, "get", "topics", "-o", "json", "--limit", "0")), &topics); err != nil {
		t.Fatal(err)
	}
	var names []string
	cluster := ""
	for _, tp := range topics {
		names = append(names, tp.Name)
		if tp.Name == embedded.DemoTopic {
			cluster = tp.Cluster
		}
	}
	if !slices.Equal(names, nsTopics) {
		t.Fatalf("get topics: %d topics, the NameServer lists %d:\n%v\n%v", len(names), len(nsTopics), names, nsTopics)
	}

	// describe topic names its cluster and both broker groups.
	desc := mustCtl(t, s, "describe", "topic", embedded.DemoTopic)
	for _, want := range []string{"Cluster:        " + cluster, "broker-a", "broker-b", "Served route:", "Endpoints (" + cluster + ")"} {
		if !strings.Contains(desc, want) {
			t.Fatalf("describe topic lacks %q:\n%s", want, desc)
		}
	}

	// A Go sidecar connects: proxy-status shows it SYNCED.
	sc, err := sidecar.Dial(s.xds, sidecar.Options{NodeID: "e2e-sidecar"})
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	if _, err := sc.Resolve(ctx, embedded.DemoTopic); err != nil {
		t.Fatal(err)
	}
	status := ""
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		status = mustCtl(t, s, "proxy-status")
		if regexp.MustCompile(`(?m)^e2e-sidecar\s+\d+\s+-\s+SYNCED\s+-\s+-\s+SYNCED\s`).MatchString(status) {
			break
		}
	}
	if !regexp.MustCompile(`(?m)^e2e-sidecar\s+\d+\s+-\s+SYNCED\s+-\s+-\s+SYNCED\s`).MatchString(status) {
		t.Fatalf("proxy-status:\n%s", status)
	}
	if cfg := mustCtl(t, s, "proxy-config", "e2e-sidecar", "routes", "-o", "json"); !strings.Contains(cfg, `"name": "TopicTest"`) {
		t.Fatalf("proxy-config routes:\n%s", cfg)
	}

	// resolve equals the NameServer's route.
	var got remoting.TopicRouteData
	if err := json.Unmarshal([]byte(mustCtl(t, s, "resolve", embedded.DemoTopic)), &got); err != nil {
		t.Fatal(err)
	}
	want, _, err := ns.GetRouteInfo(ctx, embedded.DemoTopic)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := canonicalRoute(&got), canonicalRoute(want); a != b {
		t.Fatalf("resolve:\n%s\nNameServer:\n%s", a, b)
	}

	// resolve of an unknown topic fails at once with a clear message.
	start := time.Now()
	_, errOut, code := ctl(t, s, "resolve", "no-such-topic")
	if took := time.Since(start); code == 0 || !strings.Contains(errOut, `topic "no-such-topic" not found`) || took >= time.Second {
		t.Fatalf("resolve no-such-topic: exit %d in %v: %q", code, took, errOut)
	}

	for _, args := range [][]string{{"get", "brokersets"}, {"get", "clusters", "-o", "wide"}, {"get", "routes", embedded.DemoTopic},
		{"get", "proxies"}, {"version"}} {
		if out := mustCtl(t, s, args...); len(out) == 0 {
			t.Fatalf("rocketctl %v printed nothing", args)
		}
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"get", "widgets"}, `unknown kind "widgets"`},
		{[]string{"get", "clusters", cluster, "rmq-nope"}, `cluster "rmq-nope" not found`},
		{[]string{"get", "proxies", "nobody"}, `no connected proxy has node id "nobody"`},
		{[]string{"describe", "topic", "no-such-topic"}, "no-such-topic"},
	} {
		out, errOut, code := ctl(t, s, c.args...)
		if code == 0 || !strings.Contains(errOut, c.want) {
			t.Fatalf("rocketctl %v: exit %d %q, want an error with %q", c.args, code, errOut, c.want)
		}
		if c.args[1] == "clusters" && !strings.Contains(out, cluster) {
			t.Fatalf("get clusters with a missing name printed no found one:\n%s", out)
		}
	}
}

// canonicalRoute renders what a client reads of a route, in a fixed order: topicSysFlag and orderTopicConf are
// not carried by the served resources.
func canonicalRoute(r *remoting.TopicRouteData) string {
	c := *r
	c.OrderTopicConf, c.FilterServerTable = "", nil
	c.QueueDatas = slices.Clone(c.QueueDatas)
	for i := range c.QueueDatas {
		c.QueueDatas[i].TopicSysFlag = 0
	}
	slices.SortFunc(c.QueueDatas, func(a, b remoting.QueueData) int { return strings.Compare(a.BrokerName, b.BrokerName) })
	c.BrokerDatas = slices.Clone(c.BrokerDatas)
	slices.SortFunc(c.BrokerDatas, func(a, b remoting.BrokerData) int { return strings.Compare(a.BrokerName, b.BrokerName) })
	b, _ := json.Marshal(c)
	return string(b)
}

// TestTranslateEqualsWhatTheServerServes: `x translate` over a dump of a NameServer and a directory of custom
// resources renders, resource by resource and version by version, what a running server fed the same inputs
// serves over xDS to the same node.
func TestTranslateEqualsWhatTheServerServes(t *testing.T) {
	ns := embeddedtest.StartDemo(t)
	dir := t.TempDir()
	for name, body := range map[string]string{
		"route.yaml": `apiVersion: rocketpilot.io/v1alpha1
kind: TopicRoute
metadata: {name: migrate}
spec:
  topics: {prefix: [demo-inventory-]}
  send: {backends: [{brokerCluster: DefaultCluster, weight: 80}, {brokerCluster: ClusterB, weight: 20}]}
`,
		"binding.yaml": `apiVersion: rocketpilot.io/v1alpha1
kind: TopicBinding
metadata: {name: orders}
spec:
  nodeIDs: ["orders-*"]
  topics: [TopicTest, demo-inventory-003]
  consumerGroups: [orders-cg]
`,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s := startServe(t, "--namesrv", ns.Addr(), "--config", dir)

	dumpFile := filepath.Join(t.TempDir(), "namesrv.json")
	if err := os.WriteFile(dumpFile, []byte(mustCtl(t, s, "dump-namesrv", "--namesrv", ns.Addr())), 0o644); err != nil {
		t.Fatal(err)
	}
	var offline map[string][]cache.DumpedResource
	out := mustCtl(t, s, "x", "translate", "--namesrv-dump", dumpFile, "--config", dir, "--node", "orders-1", "-o", "json")
	if err := json.Unmarshal([]byte(out), &offline); err != nil {
		t.Fatal(err)
	}
	// The same resources named file by file with -f render the same.
	byFile := mustCtl(t, s, "x", "translate", "--namesrv-dump", dumpFile, "-f", filepath.Join(dir, "route.yaml"),
		"-f", filepath.Join(dir, "binding.yaml"), "--node", "orders-1", "-o", "json")
	if byFile != out {
		t.Errorf("x translate -f FILE -f FILE differs from --config DIR")
	}
	// --config given a file (it takes a directory) reads that file, as -f does, instead of failing.
	if one := mustCtl(t, s, "x", "translate", "--namesrv-dump", dumpFile, "--config", filepath.Join(dir, "route.yaml"),
		"--node", "orders-1", "-o", "json"); !strings.Contains(one, "demo-inventory-") {
		t.Errorf("x translate --config FILE rendered no route of the file's topics")
	}
	want := map[string]map[string]string{}
	for typeURL, rs := range offline {
		want[typeURL] = map[string]string{}
		for _, r := range rs {
			want[typeURL][r.Name] = r.Version
		}
	}
	if len(want[translate.RouteType]) != ns.TopicCount() || len(want[translate.ExtensionType]) != 1 || len(want[translate.ClusterType]) == 0 {
		t.Fatalf("translate rendered %d routes, %d ECDS, %d clusters", len(want[translate.RouteType]),
			len(want[translate.ExtensionType]), len(want[translate.ClusterType]))
	}

	// The same node, live: every topic's route by name, the clusters and endpoints it uses, its ECDS and listener.
	conn, err := grpc.NewClient(s.xds, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var topics []string
	for name := range want[translate.RouteType] {
		topics = append(topics, name)
	}
	subscribe := []struct {
		typeURL string
		names   []string
	}{
		{translate.RouteType, topics},
		{translate.ClusterType, []string{"*"}},
		{translate.EndpointType, []string{"*"}},
		{translate.ExtensionType, []string{translate.ExtensionConfigName}},
		{translate.ListenerType, []string{translate.ListenerName}},
	}
	for i, sub := range subscribe {
		req := &discovery.DeltaDiscoveryRequest{TypeUrl: sub.typeURL, ResourceNamesSubscribe: sub.names}
		if i == 0 {
			req.Node = &corev3.Node{Id: "orders-1"}
		}
		if err := st.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string]map[string]string{}
	complete := func() bool {
		for typeURL, names := range want {
			if len(got[typeURL]) != len(names) {
				return false
			}
		}
		return true
	}
	for !complete() {
		resp, err := st.Recv()
		if err == io.EOF || err != nil {
			t.Fatalf("stream: %v (have %v)", err, got)
		}
		if got[resp.TypeUrl] == nil {
			got[resp.TypeUrl] = map[string]string{}
		}
		for _, r := range resp.Resources {
			got[resp.TypeUrl][r.Name] = r.Version
		}
		if err := st.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: resp.TypeUrl, ResponseNonce: resp.Nonce}); err != nil {
			t.Fatal(err)
		}
	}
	for typeURL, names := range want {
		for name, version := range names {
			if got[typeURL][name] != version {
				t.Errorf("%s %s: translate says version %s, the server serves %q", shortType(typeURL), name, version, got[typeURL][name])
			}
		}
	}
}

// TestEndToEndMutualTLS runs rocketctl against a rocketpilot that serves mutual TLS: with the CA and a client
// certificate, get and resolve work; without the certificate, both fail with the server's reason.
func TestEndToEndMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca := certtest.NewCA(t, "test-ca")
	// The operator's certificate names node "rocketctl" too, the node `rocketctl resolve` opens its xDS stream as:
	// rocketpilot's identity check (on under mutual TLS) wants the certificate to name the node.
	srv, cli := ca.Server(t, "rocketpilot"), ca.Workload(t, "operator", "rocketctl")
	f := certtest.Write(t, dir, "ca.crt", ca.PEM, "tls.crt", srv.Cert, "tls.key", srv.Key, "client.crt", cli.Cert, "client.key", cli.Key)
	s := startServe(t, "--demo", "--demo-namesrv-address", "127.0.0.1:0", "--tls-cert", f[1], "--tls-key", f[2], "--tls-client-ca", f[0])

	out := mustCtl(t, s, "--tls-ca", f[0], "--tls-cert", f[3], "--tls-key", f[4], "get", "topics", "-o", "name")
	if !strings.Contains(out, "topic/"+embedded.DemoTopic+"\n") {
		t.Fatalf("get topics over mutual TLS:\n%s", out)
	}
	out = mustCtl(t, s, "--tls-ca", f[0], "--tls-cert", f[3], "--tls-key", f[4], "resolve", embedded.DemoTopic)
	if !strings.Contains(out, `"brokerName": "broker-a"`) {
		t.Fatalf("resolve over mutual TLS:\n%s", out)
	}
	// The TLS flags turn an http:// --server into https.
	var out2, errOut2 bytes.Buffer
	if code := run(context.Background(), []string{"rocketctl", "--server", "http://" + s.admin, "--tls-ca", f[0], "--tls-cert", f[3],
		"--tls-key", f[4], "get", "topics", "-o", "name"}, &out2, &errOut2); code != 0 || !strings.Contains(out2.String(), "topic/"+embedded.DemoTopic) {
		t.Fatalf("get topics with an http:// server and the TLS flags: exit %d: %s", code, errOut2.String())
	}
	if _, errOut, code := ctl(t, s, "--tls-ca", f[0], "get", "topics"); code == 0 || !strings.Contains(errOut, "client certificate") {
		t.Fatalf("get topics without a client certificate: exit %d: %s", code, errOut)
	}
	if _, errOut, code := ctl(t, s, "--tls-ca", f[0], "--request-timeout", "2s", "resolve", embedded.DemoTopic); code == 0 {
		t.Fatalf("resolve without a client certificate: exit %d: %s", code, errOut)
	}
}
