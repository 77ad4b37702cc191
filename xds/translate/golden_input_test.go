package translate

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	rmqv3 "github.com/envoyproxy/go-control-plane/contrib/envoy/extensions/filters/network/rocketmq_proxy/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"

	"github.com/rocketpilot/rocketpilot/routing"
)

// TestTranslateGolden is the input-driven golden test of translation: each testdata/in/<case>.yaml describes a
// model and the TopicRoute policies over it; the test builds the model through routing.Table (SetBrokers,
// SetPolicies, Apply: the code production runs) and translates every topic, and testdata/out/<case>/ holds what
// comes out, one JSON file per resource kind:
//
//	topics.json        the served model: each topic's orderTopicConf, policy, pop rule, cluster and members (perm, source
//	                   perm, send weight, ack rule) as the table serves them — what the resources below are built from
//	clusters.json      every cluster of the topics' broker sets (Cluster, and SendCluster for a weighted set)
//	endpoints.json     their ClusterLoadAssignments (LoadAssignment, SendLoadAssignment)
//	routes.json        each topic's route table (TopicRoute)
//	clientroutes.json  each topic's route as a RocketMQ client reads it from Envoy (ClientTopicRoute)
//	ecds.json          the filter config served by ECDS (ExtensionConfig of ProxyConfig)
//	listener.json      the listener with that config inline (Listener with ListenerOptions.Inline)
//
// Lists are sorted by name. The JSON is protojson's, re-indented through encoding/json so that the bytes are
// stable (protojson varies its whitespace on purpose). `go test ./xds/translate -run TestTranslateGolden -update`
// rewrites the outputs and removes those no input produces any more; without -update any difference, missing
// file or stale output fails the test, naming the file.
//
// The input format (YAML; every field but the names is optional):
//
//	description: what the case shows
//	brokers:                  # broker groups: the cluster table (106) of source "ns"
//	- cluster: DefaultCluster
//	  name: broker-a
//	  zone: zone-1
//	  addrs: {"0": "10.0.0.1:10911", "1": "10.0.0.2:10911"}   # broker id → address; no "0": the master is gone
//	policies:                 # TopicRoutes, in precedence order (the first is the oldest)
//	- name: ns/p
//	  match: {exact: [TopicA], prefix: [Order], regex: "Topic[0-9]+"}  # regex anchored to the whole name
//	  routeQuery: [{brokerCluster: ClusterB}]
//	  send: [{brokerNames: [broker-a], weight: 80}, {brokerNames: [broker-b], weight: 20}]  # weight: weighted
//	  consume: [{brokerNames: [broker-a]}]
//	  ack: [{brokerNames: [broker-b]}]
//	  drain: [broker-b]
//	  ordered: true
//	  pop: {consumerGroups: [g1, g2], invisibleTime: 8s}  # invisibleTime: a Go duration, 60s when left out
//	topics:                   # each topic's route (105) as source "ns" (or `source`) reports it, after the policies
//	- name: TopicA
//	  source: ns
//	  orderTopicConf: "broker-a:4;broker-b:4"
//	  members:                # the groups of the route; cluster, zone and addresses come from brokers
//	  - {broker: broker-a, readQueueNums: 4, writeQueueNums: 4, perm: 6, topicSysFlag: 0}
//	  later:                  # reports of the same source that follow, applied in order
//	  - members: [...]
func TestTranslateGolden(t *testing.T) {
	inputs, err := filepath.Glob(filepath.Join("testdata", "in", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(inputs) == 0 {
		t.Fatal("no inputs in testdata/in")
	}
	cases := map[string]bool{}
	ran := map[string]bool{}     // cases that ran (-run may select some)
	written := map[string]bool{} // their outputs
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".yaml")
		cases[name] = true
		t.Run(name, func(t *testing.T) {
			ran[name] = true
			for file, got := range translateInput(t, in) {
				path := filepath.Join("testdata", "out", name, file)
				written[path] = true
				goldenFile(t, path, got)
			}
		})
	}
	// Stale outputs: a directory no input names, a file the input of a case that ran no longer produces.
	outDirs, err := os.ReadDir(filepath.Join("testdata", "out"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	for _, d := range outDirs {
		dir := filepath.Join("testdata", "out", d.Name())
		if !cases[d.Name()] || !d.IsDir() {
			stale(t, dir)
			continue
		}
		files, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if p := filepath.Join(dir, f.Name()); ran[d.Name()] && !written[p] {
				stale(t, p)
			}
		}
	}
}

// stale removes an output no input produces under -update, and fails the test otherwise.
func stale(t *testing.T, path string) {
	t.Helper()
	if *update {
		if err := os.RemoveAll(path); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("%s: stale output, no input produces it (run go test ./xds/translate -run TestTranslateGolden -update)", path)
}

// goldenFile compares got with the file at path, or writes it under -update.
func goldenFile(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("%v (run go test ./xds/translate -run TestTranslateGolden -update)", err)
		return
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the translation (rerun with -update after a deliberate change):\n%s", path, lineDiff(want, got))
	}
}

// lineDiff shows the first differing line of two texts with a few lines of context.
func lineDiff(want, got []byte) string {
	w, g := strings.Split(string(want), "\n"), strings.Split(string(got), "\n")
	i := 0
	for i < len(w) && i < len(g) && w[i] == g[i] {
		i++
	}
	var b strings.Builder
	for j := max(0, i-3); j < i; j++ {
		fmt.Fprintf(&b, "  %4d   %s\n", j+1, w[j])
	}
	for j := i; j < min(len(w), i+4); j++ {
		fmt.Fprintf(&b, "  %4d - %s\n", j+1, w[j])
	}
	for j := i; j < min(len(g), i+4); j++ {
		fmt.Fprintf(&b, "  %4d + %s\n", j+1, g[j])
	}
	fmt.Fprintf(&b, "  (want %d lines, got %d)", len(w), len(g))
	return b.String()
}

// goldenInput is the input format TestTranslateGolden documents.
type goldenInput struct {
	Description string `json:"description"`
	Brokers     []struct {
		Cluster string           `json:"cluster"`
		Name    string           `json:"name"`
		Zone    string           `json:"zone"`
		Addrs   map[int64]string `json:"addrs"`
	} `json:"brokers"`
	Policies []struct {
		Name  string `json:"name"`
		Match struct {
			Exact  []string `json:"exact"`
			Prefix []string `json:"prefix"`
			Regex  string   `json:"regex"`
		} `json:"match"`
		RouteQuery []goldenBackend `json:"routeQuery"`
		Send       []goldenBackend `json:"send"`
		Consume    []goldenBackend `json:"consume"`
		Ack        []goldenBackend `json:"ack"`
		Drain      []string        `json:"drain"`
		Ordered    bool            `json:"ordered"`
		Pop        *struct {
			ConsumerGroups []string `json:"consumerGroups"`
			InvisibleTime  string   `json:"invisibleTime"`
		} `json:"pop"`
	} `json:"policies"`
	Topics []struct {
		Name   string `json:"name"`
		Source string `json:"source"`
		goldenReport
		Later []goldenReport `json:"later"`
	} `json:"topics"`
}

type goldenBackend struct {
	BrokerCluster string   `json:"brokerCluster"`
	BrokerNames   []string `json:"brokerNames"`
	Weight        *int32   `json:"weight"`
}

type goldenReport struct {
	OrderTopicConf string `json:"orderTopicConf"`
	Members        []struct {
		Broker         string `json:"broker"`
		ReadQueueNums  int32  `json:"readQueueNums"`
		WriteQueueNums int32  `json:"writeQueueNums"`
		Perm           int32  `json:"perm"`
		TopicSysFlag   int32  `json:"topicSysFlag"`
	} `json:"members"`
}

func backends(in []goldenBackend) []routing.Backend {
	if in == nil {
		return nil
	}
	out := make([]routing.Backend, len(in))
	for i, b := range in {
		out[i] = routing.Backend{BrokerCluster: b.BrokerCluster, BrokerNames: b.BrokerNames}
		if b.Weight != nil {
			out[i].Weight, out[i].Weighted = *b.Weight, true
		}
	}
	return out
}

// translateInput builds the model an input describes and returns the rendered outputs by file name.
func translateInput(t *testing.T, path string) map[string][]byte {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var in goldenInput
	if err := yaml.UnmarshalStrict(raw, &in); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	tab := routing.NewTable()
	groups := map[string]routing.Broker{}
	var brokers []routing.Broker
	for _, b := range in.Brokers {
		g := routing.Broker{Cluster: b.Cluster, Name: b.Name, Zone: b.Zone}
		for id, addr := range b.Addrs {
			g.Addrs = append(g.Addrs, routing.BrokerAddr{ID: id, Addr: addr})
		}
		brokers = append(brokers, g)
		groups[b.Name] = g
	}
	tab.SetBrokers("ns", brokers)
	created := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	var policies []routing.Policy
	for i, p := range in.Policies {
		rp := routing.Policy{Name: p.Name, Version: "1", Created: created.Add(time.Duration(i) * time.Second),
			Match:      routing.TopicMatch{Exact: p.Match.Exact, Prefix: p.Match.Prefix},
			RouteQuery: backends(p.RouteQuery), Send: backends(p.Send), Consume: backends(p.Consume), Ack: backends(p.Ack),
			Drain: p.Drain, Ordered: p.Ordered}
		if p.Match.Regex != "" {
			re, err := regexp.Compile("^(?:" + p.Match.Regex + ")$")
			if err != nil {
				t.Fatalf("%s: policy %s: %v", path, p.Name, err)
			}
			rp.Match.Regex = re
		}
		if p.Pop != nil {
			var invisible time.Duration
			if p.Pop.InvisibleTime != "" {
				if invisible, err = time.ParseDuration(p.Pop.InvisibleTime); err != nil {
					t.Fatalf("%s: policy %s: %v", path, p.Name, err)
				}
			}
			rp.Pop = routing.NewPopPolicy(p.Pop.ConsumerGroups, invisible)
		}
		policies = append(policies, rp)
	}
	tab.SetPolicies(policies)
	route := func(r goldenReport) *routing.Route {
		out := &routing.Route{OrderTopicConf: r.OrderTopicConf}
		for _, m := range r.Members {
			g, ok := groups[m.Broker]
			if !ok {
				t.Fatalf("%s: member %s names no broker group", path, m.Broker)
			}
			out.Members = append(out.Members, routing.Member{Cluster: g.Cluster, BrokerName: g.Name, Zone: g.Zone,
				Addrs: slices.Clone(g.Addrs), ReadQueueNums: m.ReadQueueNums, WriteQueueNums: m.WriteQueueNums,
				Perm: m.Perm, TopicSysFlag: m.TopicSysFlag})
		}
		return out
	}
	var names []string
	for _, tp := range in.Topics {
		source := cmpOr(tp.Source, "ns")
		tab.Apply(source, routing.Update{Topic: tp.Name, Route: route(tp.goldenReport)})
		for _, r := range tp.Later {
			tab.Apply(source, routing.Update{Topic: tp.Name, Route: route(r)})
		}
		if !slices.Contains(names, tp.Name) {
			names = append(names, tp.Name)
		}
	}
	slices.Sort(names)
	topics := tab.Topics(names)

	type servedTopic struct {
		Name           string             `json:"name"`
		OrderTopicConf string             `json:"orderTopicConf,omitempty"`
		Policy         string             `json:"policy,omitempty"`
		Pop            *routing.PopPolicy `json:"pop,omitempty"`
		Overridden     []string           `json:"overridden,omitempty"`
		Cluster        string             `json:"cluster"`
		Members        []routing.Member   `json:"members"`
	}
	var served []servedTopic
	var clusters, endpoints, routes []proto.Message
	var rcs []*rmqv3.RouteConfiguration
	seen := map[string]bool{}
	for _, tp := range topics {
		if tp == nil {
			t.Fatalf("%s: a topic of the input is not served", path)
		}
		policy, overridden := tab.TopicPolicy(tp.Name)
		served = append(served, servedTopic{Name: tp.Name, OrderTopicConf: tp.OrderTopicConf, Policy: policy, Pop: tp.Pop,
			Overridden: overridden, Cluster: ClusterName(tp.BrokerSet), Members: tp.BrokerSet.Members})
		rc := TopicRoute(tp)
		rcs = append(rcs, rc)
		routes = append(routes, rc)
		if !seen[ClusterName(tp.BrokerSet)] {
			seen[ClusterName(tp.BrokerSet)] = true
			clusters = append(clusters, Cluster(tp.BrokerSet))
			endpoints = append(endpoints, LoadAssignment(tp.BrokerSet))
			if Weighted(tp.BrokerSet) {
				clusters = append(clusters, SendCluster(tp.BrokerSet))
				endpoints = append(endpoints, SendLoadAssignment(tp.BrokerSet))
			}
		}
	}
	byName := func(a, b proto.Message) int { return strings.Compare(resourceName(a), resourceName(b)) }
	slices.SortFunc(clusters, byName)
	slices.SortFunc(endpoints, byName)

	proxy := ProxyConfig(ProxyOptions{StatPrefix: "rocketmq"}, rcs)
	ext, err := ExtensionConfig(proxy)
	if err != nil {
		t.Fatal(err)
	}
	l, err := Listener(ListenerOptions{Port: 10000, Inline: proxy})
	if err != nil {
		t.Fatal(err)
	}
	var views []any
	for _, tp := range topics {
		views = append(views, map[string]any{"topic": tp.Name, "route": ClientTopicRoute(LoadAssignment(tp.BrokerSet))})
	}
	return map[string][]byte{
		"topics.json":       renderJSON(t, served),
		"clusters.json":     renderJSON(t, protoTrees(t, clusters...)),
		"endpoints.json":    renderJSON(t, protoTrees(t, endpoints...)),
		"routes.json":       renderJSON(t, protoTrees(t, routes...)),
		"clientroutes.json": renderJSON(t, views),
		"ecds.json":         renderJSON(t, protoTrees(t, ext)[0]),
		"listener.json":     renderJSON(t, protoTrees(t, l)[0]),
	}
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// resourceName is a cluster's or a load assignment's name.
func resourceName(m proto.Message) string {
	if c, ok := m.(interface{ GetClusterName() string }); ok {
		return c.GetClusterName()
	}
	return m.(interface{ GetName() string }).GetName()
}

// protoTrees validates resources and returns each as protojson's JSON tree.
func protoTrees(t *testing.T, msgs ...proto.Message) []any {
	t.Helper()
	trees := make([]any, len(msgs))
	for i, m := range msgs {
		if v, ok := m.(interface{ ValidateAll() error }); ok {
			if err := v.ValidateAll(); err != nil {
				t.Fatalf("%T fails ValidateAll: %v", m, err)
			}
		}
		b, err := protojson.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &trees[i]); err != nil {
			t.Fatal(err)
		}
	}
	return trees
}

// renderJSON is encoding/json's indented output (map keys sorted), with a final newline.
func renderJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}
