package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/rocketpilot/rocketpilot/nameserver/embedded"
	"github.com/rocketpilot/rocketpilot/xds/server"
	"github.com/rocketpilot/rocketpilot/xds/sidecar"
)

// The describe views of a proxy, a cluster and TopicRoutes, printed from answers of a real admin API (rocketpilot
// serve --demo --config examples plus a TopicRoute orders-all that takes the demo-orders topics from
// orders-drain-broker-b, one Go sidecar orders-7f9c in namespace default with app=orders), captured once.
func TestGoldenDescribe(t *testing.T) {
	var proxy server.ProxyDetail
	fixture(t, "describe-proxy.json", &proxy)
	now := proxy.Streams[0].Opened.Add(90 * time.Second)
	golden(t, "describe-proxy.text", func(g *globals) error { return describeProxy(g, &proxy, now) }, "text")
	// The same node once it rejected its endpoints: the state and the NACK's error, as proxy-status shows them.
	ts := &proxy.Streams[0].Types[0]
	ts.State, ts.NackError = "NACKED", "cluster rmq-DefaultCluster-1cf4d6a4fe2c943e: endpoint 127.0.0.1:0 has no port"
	golden(t, "describe-proxy-nacked.text", func(g *globals) error { return describeProxy(g, &proxy, now) }, "text")
	var cluster server.BrokerSetDetail
	fixture(t, "describe-cluster.json", &cluster)
	golden(t, "describe-cluster.text", func(g *globals) error { return describeBrokerSet(g, &cluster) }, "text")
	for _, name := range []string{"describe-topicroute", "describe-topicroute-winner"} {
		var tr server.PolicyDetail
		fixture(t, name+".json", &tr)
		golden(t, name+".text", func(g *globals) error { return describeTopicRoute(g, &tr) }, "text")
	}
}

// describe topic's model version is the topic's (the model version of its last change) and always one of the
// versions its Events rows cover: a change the log coalesced from several writes shows its range; a change not in
// the log (gone from it, or not recorded yet) is said to be.
func TestDescribeTopicVersionAgreesWithEvents(t *testing.T) {
	now := fixtureNow(t)
	var chain server.TopicChain
	fixture(t, "topic-demo-inventory-003.json", &chain)
	chain.Topic.Version, chain.Changes[1].From = 110, 100 // changed at 110, among writes 100 to 118 coalesced
	golden(t, "describe-topic-coalesced.text", func(g *globals) error { return describeTopic(g.out, &chain, now) }, "text")
	chain.Topic.Version, chain.Changes[1].From = 5, 0 // changed before the log's oldest entry
	golden(t, "describe-topic-old.text", func(g *globals) error { return describeTopic(g.out, &chain, now) }, "text")
}

// Every kind describe knows, against `rocketpilot serve --demo --config` (the examples' TopicRoutes and binding)
// with a Go sidecar connected: text, aliases, -o json, and a name not found for each kind (exit 1, the kind and
// name in the error, where to list them).
func TestDescribeEveryKindAgainstServeDemo(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"topicroute-migration.yaml", "topicroute-drain.yaml", "topicbinding.yaml"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "examples", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s := startServe(t, "--demo", "--demo-namesrv-address", "127.0.0.1:0", "--config", dir)
	meta, err := structpb.NewStruct(map[string]any{"NAMESPACE": "default", "LABELS": map[string]any{"app": "orders"}})
	if err != nil {
		t.Fatal(err)
	}
	sc, err := sidecar.Dial(s.xds, sidecar.Options{NodeID: "describe-e2e", Metadata: meta})
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := sc.Resolve(ctx, embedded.DemoTopic); err != nil {
		t.Fatal(err)
	}

	// The proxy: its metadata, the binding that selects it, its scope, what it holds, its sync state.
	var desc string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if desc = mustCtl(t, s, "describe", "node", "describe-e2e"); strings.Contains(desc, "ROUTES  ") && !strings.Contains(desc, "STALE") {
			break
		}
	}
	for _, want := range []string{"Namespace:   default", "Labels:      app=orders", "Bindings:    default/orders", "Scope:       3 topics",
		"%RETRY%orders-cg", "Sync state:", "SYNCED"} {
		if !strings.Contains(desc, want) {
			t.Fatalf("describe node lacks %q:\n%s", want, desc)
		}
	}
	var proxy server.ProxyDetail
	if err := json.Unmarshal([]byte(mustCtl(t, s, "describe", "proxy", "describe-e2e", "-o", "json")), &proxy); err != nil {
		t.Fatal(err)
	}
	if proxy.Node != "describe-e2e" || proxy.Subscribed != 1 || len(proxy.Streams) != 1 || len(proxy.Holds) == 0 {
		t.Fatalf("describe proxy -o json: %+v", proxy)
	}

	// The cluster of a weighted topic, and its broker set by hash: the same view, with both clusters.
	var chain server.TopicChain
	if err := json.Unmarshal([]byte(mustCtl(t, s, "describe", "topic", "demo-inventory-003", "-o", "json")), &chain); err != nil {
		t.Fatal(err)
	}
	byCluster := mustCtl(t, s, "describe", "cluster", chain.Topic.Cluster)
	if byHash := mustCtl(t, s, "describe", "bs", chain.Topic.BrokerSet); byHash != byCluster {
		t.Fatalf("describe bs HASH and describe cluster NAME differ:\n%s\n%s", byHash, byCluster)
	}
	for _, want := range []string{"Broker set:  " + chain.Topic.BrokerSet, "Clusters:    " + chain.Topic.Cluster + ", " + chain.Topic.Cluster + "-send",
		"Endpoints (" + chain.Topic.Cluster + "-send):", "demo-inventory-003", "broker-a", "broker-b"} {
		if !strings.Contains(byCluster, want) {
			t.Fatalf("describe cluster lacks %q:\n%s", want, byCluster)
		}
	}
	var set server.BrokerSetDetail
	if err := json.Unmarshal([]byte(mustCtl(t, s, "describe", "cluster", chain.Topic.Cluster, "-o", "json", "--limit", "0")), &set); err != nil {
		t.Fatal(err)
	}
	if set.Topics == 0 || len(set.Names) != set.Topics || len(set.Members) != 2 || len(set.Clusters) != 2 {
		t.Fatalf("describe cluster -o json: %d topics, %d names, %d members, %d clusters", set.Topics, len(set.Names), len(set.Members), len(set.Clusters))
	}

	// The TopicRoute: its rules and the topics it governs, by NAME in -n's namespace or NAMESPACE/NAME.
	tr := mustCtl(t, s, "describe", "tr", "inventory-migration", "-n", "default")
	if other := mustCtl(t, s, "describe", "topicroute", "default/inventory-migration"); other != tr {
		t.Fatalf("describe tr NAME -n default and NAMESPACE/NAME differ:\n%s\n%s", tr, other)
	}
	for _, want := range []string{"Name:              default/inventory-migration", "Topics match:      prefix demo-inventory-",
		"send  brokerNames broker-b  80      yes", "Governs:           30 topics", "demo-inventory-003", "… 10 more"} {
		if !strings.Contains(tr, want) {
			t.Fatalf("describe tr lacks %q:\n%s", want, tr)
		}
	}

	// describe topic: the model version is one of those its events cover.
	topic := mustCtl(t, s, "describe", "topic", "demo-inventory-003")
	m := regexp.MustCompile(`Model version:  (\d+) \(of the topic's last change\)`).FindStringSubmatch(topic)
	if m == nil {
		t.Fatalf("describe topic has no model version:\n%s", topic)
	}
	v, _ := strconv.ParseUint(m[1], 10, 64)
	covered := false
	for _, ch := range chain.Changes {
		covered = covered || ch.Covers(v)
	}
	if !covered || strings.Contains(topic, "not in the change log") {
		t.Fatalf("no event covers model version %d: %+v\n%s", v, chain.Changes, topic)
	}

	// Not found, for each kind.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"describe", "proxy", "nope"}, `error: no connected proxy has node id "nope" (GET /api/v1/proxies lists them)`},
		{[]string{"describe", "brokerset", "0123456789abcdef"}, `error: broker set "0123456789abcdef" not found`},
		{[]string{"describe", "cluster", "rmq-nope"}, `error: cluster "rmq-nope" not found`},
		{[]string{"describe", "tr", "nope"}, `error: topicroute "default/nope" not found`},
		{[]string{"describe", "topicroute", "a/b/c"}, `error: invalid TopicRoute name "a/b/c": want NAME or NAMESPACE/NAME`},
		{[]string{"describe", "topic", "nope"}, `error: topic "nope" not found`},
		{[]string{"describe", "widget", "x"}, `error: describe knows topics, proxies, brokersets, clusters, topicroutes and sidecars, not "widget"`},
	} {
		out, errOut, code := ctl(t, s, c.args...)
		if code != 1 || out != "" || !strings.HasPrefix(errOut, c.want) {
			t.Errorf("rocketctl %v: exit %d, stdout %q, stderr %q; want exit 1 and %q", c.args, code, out, errOut, c.want)
		}
	}
}
