package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rocketpilot/rocketpilot/xds/cache"
	"github.com/rocketpilot/rocketpilot/xds/server"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// The fixtures in testdata/admin are answers of a real admin API (rocketpilot serve --demo --config examples, one
// Go sidecar connected), captured once; now.txt is when. The golden files are what each printer makes of them.

func fixture(t *testing.T, name string, v any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "admin", name))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

func fixtureNow(t *testing.T) time.Time {
	b, err := os.ReadFile(filepath.Join("testdata", "admin", "now.txt"))
	if err != nil {
		t.Fatal(err)
	}
	now, err := time.Parse(time.RFC3339, strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return now
}

func golden(t *testing.T, name string, print func(g *globals) error, output string) {
	t.Helper()
	var out bytes.Buffer
	g := &globals{out: &out, output: output}
	if err := print(g); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./cmd/rocketctl -update)", err)
	}
	if out.String() != string(want) {
		t.Fatalf("%s differs from the golden file; got:\n%s", name, out.String())
	}
}

func TestGoldenOutput(t *testing.T) {
	now := fixtureNow(t)
	var topics server.TopicList
	fixture(t, "topics.json", &topics)
	for _, o := range []string{"table", "wide", "json", "yaml", "name"} {
		golden(t, "topics."+o, func(g *globals) error { return printTopics(&view{globals: g}, topics.Topics) }, o)
	}
	var sets []server.BrokerSetRow
	fixture(t, "brokersets.json", &sets)
	for _, o := range []string{"table", "wide"} {
		golden(t, "brokersets."+o, func(g *globals) error { return printBrokerSets(&view{globals: g}, sets) }, o)
	}
	var clusters []server.ClusterRow
	fixture(t, "clusters.json", &clusters)
	for _, o := range []string{"table", "wide", "json"} {
		golden(t, "clusters."+o, func(g *globals) error { return printClusters(&view{globals: g}, clusters) }, o)
	}
	var raw json.RawMessage
	fixture(t, "route-TopicTest.json", &raw)
	row, err := summarizeRoute("TopicTest", raw)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []string{"table", "wide", "yaml"} {
		golden(t, "routes."+o, func(g *globals) error { return printRoutes(&view{globals: g}, []routeRow{row}) }, o)
	}
	var streams []cache.StreamStatus
	fixture(t, "proxies.json", &streams)
	for _, o := range []string{"table", "wide"} {
		golden(t, "proxies."+o, func(g *globals) error { return printProxies(&view{globals: g}, streams, now) }, o)
	}
	golden(t, "proxy-status.table", func(g *globals) error { return printProxyStatus(g, streams, now) }, "table")
	golden(t, "proxy-status-node.table", func(g *globals) error { return printProxyDetail(g, streams, now) }, "table")
	var chain server.TopicChain
	fixture(t, "topic-demo-inventory-003.json", &chain)
	golden(t, "describe-topic.text", func(g *globals) error { return describeTopic(g.out, &chain, now) }, "text")
}

// TestKubectlPlugin: installed as kubectl-rocketmq, the command names itself as kubectl does its plugins.
func TestKubectlPlugin(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(t.Context(), []string{"/usr/local/bin/kubectl-rocketmq", "get", "--help"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "kubectl rocketmq get KIND [NAME...]") {
		t.Fatalf("usage as a plugin:\n%s", out.String())
	}
}

// The fixtures are answers a real admin API wrote; rocketctl reads them into the server's own response types.
// Each decodes with no key left over, and written again as the server writes (indented by two spaces) gives the
// fixture byte for byte: the types rocketctl decodes into are the shape on the wire.
func TestAdminFixturesAreServerTypes(t *testing.T) {
	for name, v := range map[string]any{
		"topics.json":                   &server.TopicList{},
		"topic-demo-inventory-003.json": &server.TopicChain{},
		"brokersets.json":               &[]server.BrokerSetRow{},
		"clusters.json":                 &[]server.ClusterRow{},
		"proxies.json":                  &[]cache.StreamStatus{},
	} {
		b, err := os.ReadFile(filepath.Join("testdata", "admin", name))
		if err != nil {
			t.Fatal(err)
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(v); err != nil {
			t.Errorf("%s into %T: %v", name, v, err)
			continue
		}
		var again bytes.Buffer
		enc := json.NewEncoder(&again)
		enc.SetIndent("", "  ")
		if err := enc.Encode(v); err != nil {
			t.Fatal(err)
		}
		if again.String() != string(b) {
			t.Errorf("%s: %T written again differs from the fixture:\n%s", name, v, again.String())
		}
	}
}
