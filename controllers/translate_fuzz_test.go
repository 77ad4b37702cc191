package controllers

// FuzzTranslateValidResources: custom resources the CRDs accept, over a random routing model, never translate into
// resources Envoy would reject. The path is the controllers' own without an API server: documents validated by the
// CRDs' schema and CEL rules (Validator, as the file source does; what it rejects is discarded), converted by
// PolicyOf and BindingOf and applied through Policies to a routing.Table, then served by the xDS cache to Envoy and Go
// sidecar nodes over delta and state-of-the-world (the callbacks and watches go-control-plane's servers drive), and
// through Fetch, Preview and ConfigDump. Every resource served must pass the validation protoc-gen-validate generates
// for it (ValidateAll, and the RocketmqProxy inside ECDS and inline listeners), and every cluster a served route
// names must be served to the node holding the route.

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	rmqv3 "github.com/envoyproxy/go-control-plane/contrib/envoy/extensions/filters/network/rocketmq_proxy/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	gcpcache "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	gcpstream "github.com/envoyproxy/go-control-plane/pkg/server/stream/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/rocketpilot/rocketpilot/crds/v1alpha1"
	"github.com/rocketpilot/rocketpilot/internal/fuzzbytes"
	"github.com/rocketpilot/rocketpilot/routing"
	"github.com/rocketpilot/rocketpilot/xds/cache"
	"github.com/rocketpilot/rocketpilot/xds/translate"
)

func FuzzTranslateValidResources(f *testing.F) {
	for _, s := range translateSeeds(f) {
		f.Add(s.manifests, s.choices)
	}
	v, err := NewValidator()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, manifests string, choices []byte) {
		runTranslate(t, v, manifests, choices)
	})
}

// TestTranslateFuzzSeedsReachInterestingStates keeps the generator honest: the seed corpus must produce valid
// policies of every kind, topics that follow them, routes whose sends go to a weighted send cluster, bound
// nodes, and documents the validator rejects.
func TestTranslateFuzzSeedsReachInterestingStates(t *testing.T) {
	v, err := NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	var total translateStats
	for _, s := range translateSeeds(t) {
		total.add(runTranslate(t, v, s.manifests, s.choices))
	}
	t.Logf("seed corpus: %+v", total)
	for _, c := range []struct {
		what string
		n    int
	}{
		{"accepted documents", total.accepted},
		{"rejected documents (discarded)", total.rejected},
		{"applied TopicRoutes", total.policies},
		{"generated TopicRoutes applied", total.generatedPolicies},
		{"applied TopicBindings", total.bindings},
		{"topics following a policy", total.matched},
		{"topics following a regex policy", total.regexMatched},
		{"topics following a prefix policy", total.prefixMatched},
		{"topics following an ordered policy", total.orderedMatched},
		{"topics following a drain", total.drainMatched},
		{"members whose perm a policy changed", total.policyShaped},
		{"served routes with a weighted send cluster", total.weightedRoutes},
		{"weighted send endpoints", total.weightedEndpoints},
		{"bound topics in an ECDS route table", total.boundTopics},
		{"inline listeners", total.inlineListeners},
		{"resources validated", total.resources},
	} {
		if c.n == 0 {
			t.Errorf("the seed corpus reaches no %s", c.what)
		}
	}
}

type translateSeed struct {
	manifests string
	choices   []byte
}

// translateSeeds are the examples/ manifests, edge cases, and generator-only inputs.
func translateSeeds(tb testing.TB) []translateSeed {
	examples, err := filepath.Glob(filepath.Join("..", "examples", "*.yaml"))
	if err != nil || len(examples) == 0 {
		tb.Fatalf("no examples: %v", err)
	}
	var all []string
	var out []translateSeed
	for _, e := range examples {
		b, err := os.ReadFile(e)
		if err != nil {
			tb.Fatal(err)
		}
		all = append(all, string(b))
		out = append(out, translateSeed{string(b), nil}, translateSeed{string(b), fuzzbytes.Seed(e, 64)})
	}
	out = append(out, translateSeed{strings.Join(all, "\n---\n"), fuzzbytes.Seed("examples", 300)})
	for i, m := range fzEdgeManifests {
		out = append(out, translateSeed{m, nil}, translateSeed{m, fuzzbytes.Seed(fmt.Sprint("edge", i), 128)})
	}
	for i := range 24 {
		out = append(out, translateSeed{"", fuzzbytes.Seed(fmt.Sprint("gen", i), 400)})
	}
	return out
}

// fzEdgeManifests are hand-written documents for the corners: weights with zeros, ordered topics, drains, regex and
// prefix matches, many backends, conflicts, a routeQuery that would leave no group, ack rules, bindings.
var fzEdgeManifests = []string{
	`apiVersion: rocketpilot.io/v1alpha1
kind: TopicRoute
metadata: {name: zero-weight}
spec:
  topics: {exact: [TopicTest, demo-audit-001]}
  send:
    backends:
      - {brokerNames: [broker-a], weight: 0}
      - {brokerNames: [broker-b], weight: 100}
      - {brokerNames: [broker-d], weight: 0}`,
	`apiVersion: rocketpilot.io/v1alpha1
kind: TopicRoute
metadata: {name: cluster-weights}
spec:
  topics: {prefix: [demo-inventory-, demo-audit-]}
  send:
    backends:
      - {brokerCluster: DefaultCluster, weight: 1000}
      - {brokerCluster: ClusterB, weight: 1}
  consume:
    backends:
      - {brokerCluster: ClusterB}`,
	`apiVersion: rocketpilot.io/v1alpha1
kind: TopicRoute
metadata: {name: ordered-pinned}
spec:
  topics: {exact: [demo-orders-001, demo-orders-010]}
  ordered: true
  send:
    backends:
      - {brokerNames: [broker-b]}`,
	`apiVersion: rocketpilot.io/v1alpha1
kind: TopicRoute
metadata: {name: drain-everything, namespace: shop}
spec:
  topics: {regex: "demo-(payments|audit)-0*[1-9]"}
  drain: {brokerNames: [broker-a, broker-b, broker-c, broker-d]}
  ack:
    backends:
      - {brokerNames: [broker-c]}`,
	`apiVersion: rocketpilot.io/v1alpha1
kind: TopicRoute
metadata: {name: many-backends}
spec:
  topics: {prefix: ["demo-", "%RETRY%", t]}
  send:
    backends:
` + edgeBackends(32, true) + `
  consume:
    backends:
` + edgeBackends(32, false) + `
  routeQuery:
    backends:
      - {brokerNames: [broker-a, broker-b, broker-c, broker-d, broker-e, broker_f]}`,
	`apiVersion: rocketpilot.io/v1alpha1
kind: TopicRoute
metadata: {name: nothing-left, creationTimestamp: "2024-01-01T00:00:00Z"}
spec:
  topics: {regex: ".*"}
  routeQuery:
    backends:
      - {brokerNames: [broker-zz]}
  consume:
    backends:
      - {brokerNames: [broker-zz]}
---
apiVersion: rocketpilot.io/v1alpha1
kind: TopicRoute
metadata: {name: newer-conflict, creationTimestamp: "2025-01-01T00:00:00Z"}
spec:
  topics: {exact: [TopicTest]}
  send:
    backends:
      - {brokerNames: [broker-a], weight: 3}
      - {brokerNames: [broker-b], weight: 7}`,
	`apiVersion: rocketpilot.io/v1alpha1
kind: TopicRoute
metadata: {name: ack-write-only}
spec:
  topics: {exact: [demo-payments-005, demo-inventory-003]}
  consume:
    backends:
      - {brokerNames: [broker-a, broker-c]}
  ack:
    backends:
      - {brokerCluster: DefaultCluster}
      - {brokerNames: [broker-d]}
---
apiVersion: rocketpilot.io/v1alpha1
kind: TopicBinding
metadata: {name: by-node-id}
spec:
  nodeIDs: ["envoy-*", "sidecar-go-?", "*-7d9f"]
  topics: [demo-payments-005, demo-inventory-003, nope]
---
apiVersion: rocketpilot.io/v1alpha1
kind: TopicBinding
metadata: {name: by-expression}
spec:
  podSelector:
    matchExpressions:
      - {key: app, operator: In, values: [orders, billing]}
  consumerGroups: [orders-cg, billing-cg]`,
	// Rejected by the CRDs' rules: all weights 0, an ordered topic with weights, a backend with both fields.
	`apiVersion: rocketpilot.io/v1alpha1
kind: TopicRoute
metadata: {name: all-zero}
spec:
  topics: {exact: [TopicTest]}
  send:
    backends:
      - {brokerNames: [broker-a], weight: 0}
      - {brokerNames: [broker-b], weight: 0}
---
apiVersion: rocketpilot.io/v1alpha1
kind: TopicRoute
metadata: {name: ordered-weights}
spec:
  topics: {exact: [demo-orders-001]}
  ordered: true
  send:
    backends:
      - {brokerCluster: DefaultCluster, weight: 5}
---
apiVersion: rocketpilot.io/v1alpha1
kind: TopicRoute
metadata: {name: both}
spec:
  topics: {prefix: [demo-]}
  consume:
    backends:
      - {brokerCluster: DefaultCluster, brokerNames: [broker-a]}`,
}

func edgeBackends(n int, weighted bool) string {
	var b strings.Builder
	for i := range n {
		name := fzGroups[i%len(fzGroups)].name
		if weighted {
			fmt.Fprintf(&b, "      - {brokerNames: [%s, broker-x%d], weight: %d}\n", name, i, i%4*333)
		} else {
			fmt.Fprintf(&b, "      - {brokerNames: [%s, broker-y%d]}\n", name, i)
		}
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// fuzzChoices reads the fuzzer's bytes as decisions.
type fuzzChoices = fuzzbytes.Choices

func pickOne[T any](c *fuzzChoices, from []T) T { return from[c.Intn(len(from))] }

// pickSome picks n distinct elements (fewer when from is shorter).
func pickSome[T any](c *fuzzChoices, from []T, n int) []T {
	rest := slices.Clone(from)
	var out []T
	for range min(n, len(rest)) {
		i := c.Intn(len(rest))
		out = append(out, rest[i])
		rest = slices.Delete(rest, i, i+1)
	}
	return out
}

// The model: broker groups like the demo NameServer's, and some odd ones.
var fzGroups = []struct{ cluster, name, zone string }{
	{"DefaultCluster", "broker-a", "zone-1"}, {"DefaultCluster", "broker-b", "zone-1"}, {"DefaultCluster", "broker-c", "zone-2"},
	{"ClusterB", "broker-d", "zone-3"}, {"ClusterB", "broker-e", ""}, {"odd cluster/x", "broker_f", ""},
}

type groupSpec struct{ group, perm, read, write int32 }

// fzBaseTopics are always in the model (the examples name them), before the fuzzer's changes.
var fzBaseTopics = []struct {
	name    string
	members []groupSpec
}{
	{"TopicTest", []groupSpec{{0, 6, 4, 4}, {1, 6, 4, 4}}},
	{"demo-orders-001", []groupSpec{{0, 6, 8, 8}, {1, 6, 8, 8}}},
	{"demo-orders-010", []groupSpec{{0, 6, 8, 8}, {1, 4, 8, 8}}},
	{"demo-payments-001", []groupSpec{{2, 6, 4, 4}}},
	{"demo-payments-005", []groupSpec{{2, 6, 4, 4}, {1, 4, 4, 4}}},
	{"demo-inventory-001", []groupSpec{{3, 6, 4, 4}}},
	{"demo-inventory-003", []groupSpec{{3, 6, 4, 4}, {0, 6, 4, 4}}},
	{"demo-audit-001", []groupSpec{{0, 6, 2, 2}, {1, 6, 2, 2}, {2, 4, 2, 2}, {3, 6, 2, 2}}},
	{"%RETRY%orders-cg", []groupSpec{{0, 6, 1, 1}}},
}

var (
	fzTopics = []string{"TopicTest", "demo-orders-001", "demo-orders-010", "demo-payments-001", "demo-payments-005",
		"demo-inventory-001", "demo-inventory-003", "demo-audit-001", "%RETRY%orders-cg", "t0", "t1", "t2", "u0", "v0", "nope"}
	fzBadTopics = []string{"bad topic", "", strings.Repeat("x", 128), "ünï"}
	fzPrefixes  = []string{"demo-", "demo-orders-", "demo-inventory-", "t", "%RETRY%", "zzz"}
	fzRegexes   = []string{"demo-payments-[0-9]+", "demo-.*", "t[0-9]+", ".*", "TopicTest|demo-orders-0+1", "%RETRY%.*",
		"(", "[a-", "x{1001}", "", "a**"}
	fzClusters   = []string{"DefaultCluster", "ClusterB", "odd cluster/x", "NoSuchCluster"}
	fzGroupNames = []string{"broker-a", "broker-b", "broker-c", "broker-d", "broker-e", "broker_f", "broker-zz"}
	fzPerms      = []int32{6, 4, 2, 0, 7, 14, 3, 5}
	fzQueues     = []int32{4, 8, 0, 1, 16, 2}
	fzWeights    = []int64{0, 1, 50, 100, 1000, 80, 20, 999}
	fzNodeIDs    = []string{"envoy-*", "*", "orders-7d9f", "sidecar-*", "x*y", "sidecar-go-1"}
)

type translateStats struct {
	accepted, rejected, policies, generatedPolicies, bindings                         int
	matched, regexMatched, prefixMatched, orderedMatched, drainMatched, policyShaped  int
	weightedRoutes, weightedEndpoints, boundTopics, inlineListeners, resources, nodes int
}

func (s *translateStats) add(o translateStats) {
	s.accepted += o.accepted
	s.rejected += o.rejected
	s.policies += o.policies
	s.generatedPolicies += o.generatedPolicies
	s.bindings += o.bindings
	s.matched += o.matched
	s.regexMatched += o.regexMatched
	s.prefixMatched += o.prefixMatched
	s.orderedMatched += o.orderedMatched
	s.drainMatched += o.drainMatched
	s.policyShaped += o.policyShaped
	s.weightedRoutes += o.weightedRoutes
	s.weightedEndpoints += o.weightedEndpoints
	s.boundTopics += o.boundTopics
	s.inlineListeners += o.inlineListeners
	s.resources += o.resources
	s.nodes += o.nodes
}

// translateRun is one input: what it generated (for the failure message) and what it reached.
type translateRun struct {
	t         *testing.T
	manifests string
	log       []string
	stats     translateStats
	table     *routing.Table
	policies  *Policies
	fs        *FileSource
	routes    []*v1alpha1.TopicRoute // applied
	checked   map[[32]byte]bool
	addrs     [][]routing.BrokerAddr // per group of fzGroups
}

func (r *translateRun) logf(format string, args ...any) {
	r.log = append(r.log, fmt.Sprintf(format, args...))
}

func (r *translateRun) fail(format string, args ...any) {
	r.t.Helper()
	r.t.Fatalf("%s\n\n-- manifests given --\n%s\n-- what the input made (documents, model, nodes) --\n%s",
		fmt.Sprintf(format, args...), r.manifests, strings.Join(r.log, "\n"))
}

func runTranslate(t *testing.T, v *Validator, manifests string, raw []byte) translateStats {
	c := fuzzbytes.NewChoices(raw)
	table := routing.NewTable()
	r := &translateRun{t: t, manifests: manifests, table: table, policies: NewPolicies(table), fs: &FileSource{validator: v},
		checked: map[[32]byte]bool{}}
	r.model(c)

	// Documents: those given, then generated ones; the validator discards what the API server would refuse.
	var objs []any
	if docs, err := splitDocuments([]byte(manifests)); err == nil {
		for _, d := range docs {
			objs = append(objs, r.decode(d, false))
		}
	}
	for i := range c.Intn(5) {
		objs = append(objs, r.decodeObj(genTopicRoute(c, i)))
	}
	for i := range c.Intn(3) {
		objs = append(objs, r.decodeObj(genBinding(c, i)))
	}
	if c.Flip() {
		objs = append(objs, r.decodeObj(genSource(c)))
	}
	r.applyAll(objs)
	r.countPolicies()

	sub := table.Subscribe()
	defer sub.Close()
	inline := c.OneIn(3)
	xc, err := cache.New(table, cache.Options{InlineRoutes: inline})
	if err != nil {
		r.fail("cache.New: %v", err)
	}
	r.logf("cache: inline routes %v", inline)
	nodes := r.nodes(c)

	// Phase 1: fresh streams of every kind, answered until nothing is left to say.
	var id int64
	open := func() []*cacheStream {
		var out []*cacheStream
		for _, n := range nodes {
			id++
			out = append(out, r.openStreams(xc, n, id)...)
		}
		return out
	}
	streams := open()
	r.checkStreams(xc, streams, inline)

	// Phase 2: the model and the policies change under the open streams, which get pushes, then fresh streams.
	r.changes(c)
	if c.Flip() && len(r.routes) > 0 {
		tr := r.routes[c.Intn(len(r.routes))]
		r.logf("policy removed: %s", keyOf(tr))
		r.policies.SetRoute(keyOf(tr), "", nil)
	}
	if c.Flip() {
		r.applyAll([]any{r.decodeObj(genTopicRoute(c, 9))})
	}
	if cs, ok, _ := sub.TryNext(); ok {
		xc.Apply(cs)
	}
	for _, s := range streams {
		s.drain()
		s.followEDS()
	}
	r.checkStreams(xc, streams, inline)
	fresh := open()
	r.checkStreams(xc, fresh, inline)
	r.countPolicies()

	// Fetch, Preview and ConfigDump render the same resources through other paths.
	for _, n := range nodes {
		for _, typeURL := range cache.ServedTypes {
			resp, err := xc.Fetch(context.Background(), &discovery.DiscoveryRequest{Node: n.node, TypeUrl: typeURL})
			if err != nil {
				r.fail("Fetch %s for %s: %v", typeURL, n.node.Id, err)
			}
			out, err := resp.GetDiscoveryResponse()
			if err != nil {
				r.fail("Fetch %s for %s: %v", typeURL, n.node.Id, err)
			}
			for _, a := range out.Resources {
				r.validate(typeURL, a)
			}
		}
		r.validateDump("Preview "+n.node.Id, xc.Preview(n.node, n.topics))
		if dump, ok := xc.ConfigDump(n.node.Id); ok {
			r.validateDump("ConfigDump "+n.node.Id, dump)
		}
	}
	for _, s := range append(streams, fresh...) {
		s.close()
	}
	if !xc.Idle() {
		r.fail("state left in the cache after every stream closed")
	}
	return r.stats
}

// model writes the routing model: the base topics (some changed), extra topics, and a second source's views.
func (r *translateRun) model(c *fuzzChoices) {
	r.addrs = make([][]routing.BrokerAddr, len(fzGroups))
	for g := range fzGroups {
		base := fmt.Sprintf("10.%d.0.", g)
		switch c.Intn(10) {
		case 4:
			r.addrs[g] = []routing.BrokerAddr{{ID: 0, Addr: base + "1:10911"}}
		case 5: // the master is gone
			r.addrs[g] = []routing.BrokerAddr{{ID: 1, Addr: base + "2:10911"}, {ID: 2, Addr: base + "3:10911"}}
		case 6: // addresses a NameServer may report that cannot all be dialled
			r.addrs[g] = []routing.BrokerAddr{{ID: 0, Addr: "broker.example.svc:10911"}, {ID: 1, Addr: "[fd00::7]:10911"},
				{ID: 2, Addr: "no-port"}, {ID: 3, Addr: base + "4:99999"}, {ID: 4, Addr: ":10911"}, {ID: 5, Addr: base + "6:0"}}
		case 7:
			r.addrs[g] = nil
		default:
			r.addrs[g] = []routing.BrokerAddr{{ID: 0, Addr: base + "1:10911"}, {ID: 1, Addr: base + "2:10911"}}
		}
	}
	var updates []routing.Update
	for _, bt := range fzBaseTopics {
		members := r.members(bt.members)
		if c.OneIn(4) {
			members = r.randomMembers(c)
		}
		updates = append(updates, routing.Update{Topic: bt.name, Route: &routing.Route{Members: members}})
	}
	for i := range c.Intn(6) {
		updates = append(updates, routing.Update{Topic: fmt.Sprintf("t%d", i), Route: &routing.Route{Members: r.randomMembers(c)}})
	}
	r.apply("ns-1", updates...)
	updates = nil
	for range c.Intn(4) {
		updates = append(updates, routing.Update{Topic: pickOne(c, fzTopics), Route: &routing.Route{Members: r.randomMembers(c)}})
	}
	r.apply("ns-2", updates...)
}

// changes are the model's changes once streams are open: topics removed, reshaped, shrunk (what ordered topics
// keep), added.
func (r *translateRun) changes(c *fuzzChoices) {
	for range c.Intn(6) {
		name := pickOne(c, fzTopics)
		switch c.Intn(4) {
		case 0:
			r.apply("ns-1", routing.Update{Topic: name})
		case 1:
			r.apply("ns-1", routing.Update{Topic: name, Route: &routing.Route{Members: r.randomMembers(c)}})
		case 2:
			if srcs := r.table.TopicSources(name); len(srcs) > 0 && len(srcs[0].Members) > 1 {
				m := slices.Clone(srcs[0].Members)
				m = slices.Delete(m, 0, 1)
				r.apply(srcs[0].Source, routing.Update{Topic: name, Route: &routing.Route{Members: m}})
			}
		case 3:
			r.apply("ns-2", routing.Update{Topic: "v" + strconv.Itoa(c.Intn(3)), Route: &routing.Route{Members: r.randomMembers(c)}})
		}
	}
}

func (r *translateRun) apply(source string, updates ...routing.Update) {
	for _, u := range updates {
		if u.Route == nil {
			r.logf("model %s: %s removed", source, u.Topic)
			continue
		}
		var parts []string
		for _, m := range u.Route.Members {
			parts = append(parts, fmt.Sprintf("%s/%s perm %d r%d w%d sys%d addrs %v", m.Cluster, m.BrokerName, m.Perm, m.ReadQueueNums,
				m.WriteQueueNums, m.TopicSysFlag, m.Addrs))
		}
		r.logf("model %s: %s = [%s]", source, u.Topic, strings.Join(parts, "; "))
	}
	r.table.Apply(source, updates...)
}

func (r *translateRun) members(specs []groupSpec) []routing.Member {
	out := make([]routing.Member, 0, len(specs))
	for _, s := range specs {
		g := fzGroups[s.group]
		out = append(out, routing.Member{Cluster: g.cluster, BrokerName: g.name, Zone: g.zone, Addrs: slices.Clone(r.addrs[s.group]),
			Perm: s.perm, ReadQueueNums: s.read, WriteQueueNums: s.write})
	}
	return out
}

func (r *translateRun) randomMembers(c *fuzzChoices) []routing.Member {
	if c.OneIn(12) {
		return nil // a route without queue data
	}
	groups := make([]int32, len(fzGroups))
	for i := range groups {
		groups[i] = int32(i)
	}
	var specs []groupSpec
	for _, g := range pickSome(c, groups, 1+c.Intn(4)) {
		specs = append(specs, groupSpec{g, pickOne(c, fzPerms), pickOne(c, fzQueues), pickOne(c, fzQueues)})
	}
	out := r.members(specs)
	for i := range out {
		out[i].TopicSysFlag = int32(c.Intn(2))
	}
	return out
}

func genObject(kind string, c *fuzzChoices, i int, spec map[string]any) map[string]any {
	md := map[string]any{"name": fmt.Sprintf("gen-%s-%d", strings.ToLower(kind), i)}
	if c.OneIn(24) {
		md["name"] = "Not_A_DNS_Name"
	}
	if ns := pickOne(c, []string{"", "default", "shop"}); ns != "" {
		md["namespace"] = ns
	}
	if ts := pickOne(c, []string{"", "2024-01-01T00:00:00Z", "2025-03-01T12:00:00Z"}); ts != "" {
		md["creationTimestamp"] = ts
	}
	return map[string]any{"apiVersion": v1alpha1.GroupVersion.String(), "kind": kind, "metadata": md, "spec": spec}
}

func genTopicNames(c *fuzzChoices, n int) []any {
	var out []any
	for range n {
		if c.OneIn(20) {
			out = append(out, pickOne(c, fzBadTopics))
		} else {
			out = append(out, pickOne(c, fzTopics)) // duplicates break the list-set rule: rejected
		}
	}
	return out
}

func genRegex(c *fuzzChoices) string {
	if !c.OneIn(4) {
		return pickOne(c, fzRegexes)
	}
	const alphabet = "demo-t0123456789.*+?()[]|^$\\%RETRY"
	var b strings.Builder
	for range 1 + c.Intn(10) {
		b.WriteByte(alphabet[c.Intn(len(alphabet))])
	}
	return b.String()
}

// genBackends makes backends; weights: 0 none, 1 every backend, 2 some (rejected by the CEL rules).
func genBackends(c *fuzzChoices, weights int) []any {
	n := 1 + c.Intn(3)
	switch {
	case c.OneIn(16):
		n = 32
	case c.OneIn(64):
		n = 33 // beyond maxItems
	}
	var out []any
	for i := range n {
		b := map[string]any{}
		if c.Flip() {
			b["brokerCluster"] = pickOne(c, fzClusters)
		} else {
			var names []any
			for _, g := range pickSome(c, fzGroupNames, 1+c.Intn(3)) {
				names = append(names, g)
			}
			b["brokerNames"] = names
		}
		if c.OneIn(32) {
			b["brokerCluster"], b["brokerNames"] = "DefaultCluster", []any{"broker-a"} // both: rejected
		}
		if weights == 1 || weights == 2 && i%2 == 0 {
			if c.OneIn(16) {
				b["weight"] = int64(c.Next()) * 5 // up to 1275: beyond the maximum, sometimes
			} else {
				b["weight"] = pickOne(c, fzWeights)
			}
		}
		out = append(out, b)
	}
	return out
}

func genTopicRoute(c *fuzzChoices, i int) map[string]any {
	sel := map[string]any{}
	if c.Flip() {
		sel["exact"] = genTopicNames(c, 1+c.Intn(3))
	}
	if c.Flip() {
		var ps []any
		for _, p := range pickSome(c, fzPrefixes, 1+c.Intn(2)) {
			ps = append(ps, p)
		}
		sel["prefix"] = ps
	}
	if c.Flip() || len(sel) == 0 && !c.OneIn(8) {
		sel["regex"] = genRegex(c)
	}
	spec := map[string]any{"topics": sel}
	rules := c.Next()
	noWeight := func() int {
		if c.OneIn(32) {
			return 1 // weights outside send: rejected
		}
		return 0
	}
	if rules&1 != 0 {
		w := 0
		switch c.Intn(8) {
		case 1, 2, 3, 4:
			w = 1
		case 5:
			w = 2
		}
		spec["send"] = map[string]any{"backends": genBackends(c, w)}
	}
	if rules&2 != 0 {
		spec["consume"] = map[string]any{"backends": genBackends(c, noWeight())}
	}
	if rules&4 != 0 {
		spec["ack"] = map[string]any{"backends": genBackends(c, noWeight())}
	}
	if rules&8 != 0 {
		spec["routeQuery"] = map[string]any{"backends": genBackends(c, noWeight())}
	}
	if rules&16 != 0 {
		var names []any
		for _, g := range pickSome(c, fzGroupNames, 1+c.Intn(3)) {
			names = append(names, g)
		}
		spec["drain"] = map[string]any{"brokerNames": names}
	}
	if rules&32 != 0 {
		spec["ordered"] = true
	}
	return genObject("TopicRoute", c, i, spec)
}

func genBinding(c *fuzzChoices, i int) map[string]any {
	spec := map[string]any{}
	switch c.Intn(4) {
	case 0, 1:
		var ids []any
		for _, p := range pickSome(c, fzNodeIDs, 1+c.Intn(2)) {
			ids = append(ids, p)
		}
		spec["nodeIDs"] = ids
	case 2:
		spec["podSelector"] = map[string]any{"matchLabels": map[string]any{"app": pickOne(c, []string{"orders", "billing"})}}
	case 3:
		spec["podSelector"] = map[string]any{"matchExpressions": []any{map[string]any{"key": "app",
			"operator": pickOne(c, []string{"In", "NotIn", "Exists", "Bogus"}), "values": []any{"orders"}}}}
	}
	if c.OneIn(16) {
		spec["podSelector"] = map[string]any{} // with nodeIDs, or selecting every pod
	}
	if c.Flip() || !c.OneIn(6) {
		spec["topics"] = genTopicNames(c, 1+c.Intn(4))
	}
	if c.Flip() {
		spec["consumerGroups"] = []any{pickOne(c, []string{"orders-cg", "billing-cg", "bad group"})}
	}
	return genObject("TopicBinding", c, i, spec)
}

func genSource(c *fuzzChoices) map[string]any {
	spec := map[string]any{}
	if c.Flip() {
		spec["nameServiceRef"] = map[string]any{"name": "rocketmq"}
	} else {
		spec["addresses"] = []any{pickOne(c, []string{"10.0.0.1:9876", "[fd00::1]:9876", "ns.example:9876", "no-port"})}
	}
	if c.Flip() {
		spec["pollInterval"] = pickOne(c, []string{"30s", "1s", "2h", "500ms"})
	}
	if c.Flip() {
		spec["discovery"] = pickOne(c, []string{"AllTopics", "TopicsInUse", "Some"})
	}
	return genObject("NameServerSource", c, 0, spec)
}

// decodeObj validates a generated object as the file source validates a document.
func (r *translateRun) decodeObj(o map[string]any) any {
	b, err := json.Marshal(o)
	if err != nil {
		r.fail("marshal a generated document: %v", err)
	}
	return r.decode(b, true)
}

type decodedDoc struct {
	obj       any
	generated bool
}

func (r *translateRun) decode(doc []byte, generated bool) any {
	st, obj := r.fs.decode(context.Background(), doc)
	if obj == nil {
		r.stats.rejected++
		msg := st.Error
		if len(msg) > 200 {
			msg = msg[:200] + "…"
		}
		r.logf("document rejected: %s\n    %s", strings.TrimSpace(string(doc)), msg)
		return nil
	}
	r.stats.accepted++
	r.logf("document accepted: %s", strings.TrimSpace(string(doc)))
	return decodedDoc{obj, generated}
}

// applyAll applies accepted documents as the controllers do: sources first, then policies and bindings.
func (r *translateRun) applyAll(objs []any) {
	for _, o := range objs {
		if d, ok := o.(decodedDoc); ok {
			if nss, ok := d.obj.(*v1alpha1.NameServerSource); ok {
				SourceSpecOf(nss, nss.Spec.Addresses)
			}
		}
	}
	for _, o := range objs {
		d, ok := o.(decodedDoc)
		if !ok {
			continue
		}
		switch obj := d.obj.(type) {
		case *v1alpha1.TopicRoute:
			if err := ApplyTopicRoute(r.policies, r.table, obj, hashOf(obj.Spec)); err != nil {
				if !strings.HasPrefix(err.Error(), "spec.topics.regex") {
					r.fail("an accepted TopicRoute fails to convert for a reason the schema should have caught: %v", err)
				}
				r.logf("not applied (%v)", err)
				continue
			}
			r.routes = append(r.routes, obj)
			r.stats.policies++
			if d.generated {
				r.stats.generatedPolicies++
			}
		case *v1alpha1.TopicBinding:
			if err := ApplyTopicBinding(r.policies, r.table, obj, hashOf(obj.Spec)); err != nil {
				// The schema leaves a label selector's operators, values and label syntax unchecked (the API
				// server does too): the controllers report such a binding Invalid, and so does this.
				if !strings.HasPrefix(err.Error(), "spec.podSelector") {
					r.fail("an accepted TopicBinding fails to convert: %v", err)
				}
				r.logf("not applied (%v)", err)
				continue
			}
			r.stats.bindings++
		}
	}
}

func (r *translateRun) countPolicies() {
	for _, tr := range r.routes {
		ps := r.table.PolicyStatus(keyOf(tr))
		if ps.Matched == 0 {
			continue
		}
		r.stats.matched += ps.Matched
		s := tr.Spec
		if s.Topics.Regex != "" {
			r.stats.regexMatched += ps.Matched
		}
		if len(s.Topics.Prefix) > 0 {
			r.stats.prefixMatched += ps.Matched
		}
		if s.Ordered {
			r.stats.orderedMatched += ps.Matched
		}
		if s.Drain != nil {
			r.stats.drainMatched += ps.Matched
		}
	}
	r.table.Range(func(tp *routing.Topic) bool {
		for _, m := range tp.BrokerSet.Members {
			if m.SourcePerm != 0 {
				r.stats.policyShaped++
			}
		}
		return true
	})
}

// translateNode is a node and the topics its Go sidecar streams ask for by name.
type translateNode struct {
	node   *corev3.Node
	envoy  bool
	topics []string
}

func (r *translateRun) nodes(c *fuzzChoices) []translateNode {
	var topics []*structpb.Value
	var names []string
	for _, t := range pickSome(c, fzTopics, 1+c.Intn(5)) {
		topics = append(topics, structpb.NewStringValue(t))
		names = append(names, t)
	}
	scope := structpb.NewListValue(&structpb.ListValue{Values: topics})
	if c.Flip() {
		scope = structpb.NewStringValue(strings.Join(names, " , "))
	}
	labels, _ := structpb.NewStruct(map[string]any{"app": pickOne(c, []string{"orders", "billing"})})
	var sidecar []string
	for _, t := range pickSome(c, fzTopics, 1+c.Intn(4)) {
		sidecar = append(sidecar, t)
	}
	out := []translateNode{
		{node: &corev3.Node{Id: "envoy-meta-1", Metadata: &structpb.Struct{Fields: map[string]*structpb.Value{
			cache.MetadataTopicsKey: scope}}}, envoy: true},
		{node: &corev3.Node{Id: "orders-7d9f", Metadata: &structpb.Struct{Fields: map[string]*structpb.Value{
			cache.MetadataNamespaceKey: structpb.NewStringValue(pickOne(c, []string{"default", "shop"})),
			cache.MetadataLabelsKey:    structpb.NewStructValue(labels),
		}}}, envoy: true},
		{node: &corev3.Node{Id: "sidecar-go-1"}, topics: sidecar},
	}
	for _, n := range out {
		b, _ := protojson.Marshal(n.node)
		r.logf("node %s, Go sidecar topics %v", b, n.topics)
	}
	r.stats.nodes += len(out)
	return out
}

// cacheStream drives the cache as go-control-plane's delta or state-of-the-world server does: the callbacks, one
// watch per request, the subscription state the server keeps, one muxed response channel.
type cacheStream struct {
	r     *translateRun
	c     *cache.Cache
	id    int64
	delta bool
	n     translateNode
	dch   chan gcpcache.DeltaResponse
	sch   chan gcpcache.Response
	subs  map[string]*gcpstream.Subscription
	names map[string][]string // state-of-the-world: the names each type asks for
	stop  map[string]func()
	nonce int
	held  map[string]map[string]*servedRes // type → name → what the client holds
	eds   map[string]bool                  // delta Envoy following CDS with EDS by name: names asked
	edsBy bool
}

type servedRes struct {
	body     []byte
	clusters []string // the clusters the resource routes to
}

func (r *translateRun) openStreams(c *cache.Cache, n translateNode, id int64) []*cacheStream {
	mk := func(delta bool, sid int64) *cacheStream {
		s := &cacheStream{r: r, c: c, id: sid, delta: delta, n: n, subs: map[string]*gcpstream.Subscription{}, names: map[string][]string{},
			stop: map[string]func(){}, held: map[string]map[string]*servedRes{}, eds: map[string]bool{}}
		if delta {
			s.dch = make(chan gcpcache.DeltaResponse, 16)
			c.OnDeltaStreamOpen(context.Background(), sid, "")
		} else {
			s.sch = make(chan gcpcache.Response, 16)
			c.OnStreamOpen(context.Background(), sid, "")
		}
		return s
	}
	d, sotw := mk(true, id), mk(false, id)
	if n.envoy {
		// Envoy's order: clusters, endpoints, listener, then the listener's ECDS filter config; the routes' wildcard
		// too, as a view of the scope. The delta stream follows CDS with EDS by name on even stream ids, as Envoy does.
		d.edsBy = id%2 == 0
		d.request(translate.ClusterType, []string{"*"})
		if d.edsBy {
			d.drain()
			d.followEDS()
		} else {
			d.request(translate.EndpointType, []string{"*"})
		}
		d.request(translate.ListenerType, []string{"*"})
		d.request(translate.ExtensionType, []string{translate.ExtensionConfigName})
		d.request(translate.RouteType, []string{"*"})
		d.drain()
		d.followEDS()
		for _, typeURL := range []string{translate.ClusterType, translate.EndpointType, translate.ListenerType} {
			sotw.request(typeURL, nil)
		}
		sotw.request(translate.ExtensionType, []string{translate.ExtensionConfigName})
		sotw.drain()
	} else {
		// The Go sidecar: routes by name, then the endpoints of the clusters they name, and the clusters too.
		for _, s := range []*cacheStream{d, sotw} {
			s.request(translate.RouteType, n.topics)
			s.drain()
			s.followRoutes()
		}
	}
	return []*cacheStream{d, sotw}
}

func (s *cacheStream) request(typeURL string, names []string) { s.send(typeURL, names, nil, "", "") }

func (s *cacheStream) send(typeURL string, subscribe, unsubscribe []string, nonce, version string) {
	r := s.r
	r.t.Helper()
	if stop := s.stop[typeURL]; stop != nil {
		stop()
	}
	sub := s.subs[typeURL]
	if s.delta {
		req := &discovery.DeltaDiscoveryRequest{Node: s.n.node, TypeUrl: typeURL, ResourceNamesSubscribe: subscribe,
			ResourceNamesUnsubscribe: unsubscribe, ResponseNonce: nonce}
		if err := s.c.OnStreamDeltaRequest(s.id, req); err != nil {
			r.fail("delta request refused: %v", err)
		}
		if sub == nil {
			x := gcpstream.NewDeltaSubscription(subscribe, unsubscribe, nil, true)
			sub = &x
			s.subs[typeURL] = sub
		} else {
			sub.UpdateResourceSubscriptions(subscribe, unsubscribe)
		}
		stop, err := s.c.CreateDeltaWatch(req, *sub, s.dch)
		if err != nil {
			r.fail("CreateDeltaWatch %s: %v", typeURL, err)
		}
		s.stop[typeURL] = stop
		return
	}
	if subscribe != nil || s.names[typeURL] == nil {
		s.names[typeURL] = subscribe
	}
	req := &discovery.DiscoveryRequest{Node: s.n.node, TypeUrl: typeURL, ResourceNames: s.names[typeURL], VersionInfo: version,
		ResponseNonce: nonce}
	if err := s.c.OnStreamRequest(s.id, req); err != nil {
		r.fail("request refused: %v", err)
	}
	if sub == nil {
		x := gcpstream.NewSotwSubscription(s.names[typeURL], true)
		sub = &x
		s.subs[typeURL] = sub
	} else {
		sub.SetResourceSubscription(s.names[typeURL])
	}
	stop, err := s.c.CreateWatch(req, *sub, s.sch)
	if err != nil {
		r.fail("CreateWatch %s: %v", typeURL, err)
	}
	s.stop[typeURL] = stop
}

// drain takes every response, validates what it carries, and acknowledges it (which makes the next watch).
func (s *cacheStream) drain() {
	r := s.r
	r.t.Helper()
	for i := 0; ; i++ {
		if i > 200 {
			r.fail("node %s: the cache answers every acknowledgement with another response", s.n.node.Id)
		}
		if s.delta {
			select {
			case resp := <-s.dch:
				out, err := resp.GetDeltaDiscoveryResponse()
				if err != nil {
					r.fail("delta response: %v", err)
				}
				s.nonce++
				out.Nonce = strconv.Itoa(s.nonce)
				typeURL := resp.GetDeltaRequest().GetTypeUrl()
				s.c.OnStreamDeltaResponse(s.id, resp.GetDeltaRequest(), out)
				s.subs[typeURL].SetReturnedResources(resp.GetNextVersionMap())
				held := s.heldOf(typeURL)
				for _, res := range out.Resources {
					if res.Resource.GetTypeUrl() != typeURL {
						r.fail("a %s response carries a %s", typeURL, res.Resource.GetTypeUrl())
					}
					sv := r.validate(typeURL, res.Resource)
					if got := sv.name; got != res.Name {
						r.fail("%s %q carries a resource named %q", typeURL, res.Name, got)
					}
					held[res.Name] = sv.servedRes
				}
				for _, name := range out.RemovedResources {
					delete(held, name)
				}
				s.send(typeURL, nil, nil, out.Nonce, "")
				continue
			default:
				return
			}
		}
		select {
		case resp := <-s.sch:
			out, err := resp.GetDiscoveryResponse()
			if err != nil {
				r.fail("response: %v", err)
			}
			s.nonce++
			out.Nonce = strconv.Itoa(s.nonce)
			typeURL := resp.GetRequest().GetTypeUrl()
			s.c.OnStreamResponse(context.Background(), s.id, resp.GetRequest(), out)
			s.subs[typeURL].SetReturnedResources(resp.GetReturnedResources())
			held := map[string]*servedRes{}
			for _, a := range out.Resources {
				sv := r.validate(typeURL, a)
				held[sv.name] = sv.servedRes
			}
			s.held[typeURL] = held
			s.send(typeURL, nil, nil, out.Nonce, out.VersionInfo)
		default:
			return
		}
	}
}

func (s *cacheStream) heldOf(typeURL string) map[string]*servedRes {
	if s.held[typeURL] == nil {
		s.held[typeURL] = map[string]*servedRes{}
	}
	return s.held[typeURL]
}

// followEDS subscribes a delta Envoy stream's EDS to the clusters its CDS holds, as Envoy does, until stable.
func (s *cacheStream) followEDS() {
	if !s.delta || !s.edsBy {
		return
	}
	for range 10 {
		var add []string
		for name := range s.held[translate.ClusterType] {
			if !s.eds[name] {
				s.eds[name] = true
				add = append(add, name)
			}
		}
		if len(add) == 0 {
			return
		}
		slices.Sort(add)
		s.send(translate.EndpointType, add, nil, "", "")
		s.drain()
	}
}

// followRoutes asks, as the Go sidecar does, for the endpoints (and clusters) of the clusters its routes name.
func (s *cacheStream) followRoutes() {
	for range 10 {
		var add []string
		for _, rt := range s.held[translate.RouteType] {
			for _, name := range rt.clusters {
				if !s.eds[name] {
					s.eds[name] = true
					add = append(add, name)
				}
			}
		}
		if len(add) == 0 {
			return
		}
		slices.Sort(add)
		if s.delta {
			s.send(translate.EndpointType, add, nil, "", "")
			s.send(translate.ClusterType, add, nil, "", "")
		} else {
			names := slices.Sorted(func(yield func(string) bool) {
				for n := range s.eds {
					if !yield(n) {
						return
					}
				}
			})
			s.send(translate.EndpointType, names, nil, "", "")
			s.send(translate.ClusterType, names, nil, "", "")
		}
		s.drain()
	}
}

func (s *cacheStream) close() {
	for _, stop := range s.stop {
		stop()
	}
	if s.delta {
		s.c.OnDeltaStreamClosed(s.id, s.n.node)
	} else {
		s.c.OnStreamClosed(s.id, s.n.node)
	}
}

// checkStreams checks what every stream holds: the clusters its routes name are served to it.
func (r *translateRun) checkStreams(c *cache.Cache, streams []*cacheStream, inline bool) {
	r.t.Helper()
	for _, s := range streams {
		if !s.n.envoy {
			s.followRoutes()
			for topic, rt := range s.held[translate.RouteType] {
				for _, name := range rt.clusters {
					if s.held[translate.EndpointType][name] == nil || s.held[translate.ClusterType][name] == nil {
						r.fail("node %s (delta %v): route %s names cluster %s, which the server does not serve it (endpoints %v, cluster %v)",
							s.n.node.Id, s.delta, topic, name, s.held[translate.EndpointType][name] != nil, s.held[translate.ClusterType][name] != nil)
					}
				}
			}
			continue
		}
		configType := translate.ExtensionType
		if inline {
			configType = translate.ListenerType
		}
		cfg := s.held[configType]
		if len(cfg) == 0 {
			r.fail("node %s (delta %v): no %s served", s.n.node.Id, s.delta, configType)
		}
		if inline {
			r.stats.inlineListeners++
		}
		for _, sv := range cfg {
			for _, name := range sv.clusters {
				if s.held[translate.ClusterType][name] == nil || s.held[translate.EndpointType][name] == nil {
					r.fail("node %s (delta %v): its %s routes to cluster %s, which it does not hold (cluster %v, endpoints %v)",
						s.n.node.Id, s.delta, configType, name, s.held[translate.ClusterType][name] != nil, s.held[translate.EndpointType][name] != nil)
				}
			}
		}
		if s.n.node.Id == "orders-7d9f" {
			r.stats.boundTopics += len(r.table.Bound(cache.ProxyOf(s.n.node)))
		}
	}
}

type validatedRes struct {
	name string
	*servedRes
}

// validate decodes a served resource, checks it with its generated ValidateAll (and the RocketmqProxy inside an
// ECDS config or an inline listener), and returns its name and the clusters it routes to.
func (r *translateRun) validate(typeURL string, a *anypb.Any) validatedRes {
	r.t.Helper()
	if a.GetTypeUrl() != typeURL {
		r.fail("a %s response carries a %s", typeURL, a.GetTypeUrl())
	}
	var m proto.Message
	switch typeURL {
	case translate.ClusterType:
		m = &clusterv3.Cluster{}
	case translate.EndpointType:
		m = &endpointv3.ClusterLoadAssignment{}
	case translate.ListenerType:
		m = &listenerv3.Listener{}
	case translate.ExtensionType:
		m = &corev3.TypedExtensionConfig{}
	case translate.RouteType:
		m = &rmqv3.RouteConfiguration{}
	default:
		r.fail("a resource of a type the cache does not serve: %s", typeURL)
	}
	if err := proto.Unmarshal(a.GetValue(), m); err != nil {
		r.fail("%s does not decode: %v", typeURL, err)
	}
	check := func(what string, m interface {
		proto.Message
		ValidateAll() error
	}) {
		if err := m.ValidateAll(); err != nil {
			js, _ := protojson.MarshalOptions{Multiline: true}.Marshal(m)
			r.fail("%s fails ValidateAll: %v\n%s", what, err, js)
		}
	}
	key := sha256.Sum256(append([]byte(typeURL+"\x00"), a.GetValue()...))
	first := !r.checked[key]
	r.checked[key] = true
	out := validatedRes{servedRes: &servedRes{body: a.GetValue()}}
	proxy := func(what string, cfg *anypb.Any) {
		var p rmqv3.RocketmqProxy
		if err := cfg.UnmarshalTo(&p); err != nil {
			r.fail("%s: the filter config is not a RocketmqProxy: %v", what, err)
		}
		if first {
			check(what+": its RocketmqProxy", &p)
		}
		out.clusters = routeClusterNames(p.GetRouteConfig())
	}
	switch m := m.(type) {
	case *clusterv3.Cluster:
		out.name = m.GetName()
		if first {
			check("cluster "+out.name, m)
		}
	case *endpointv3.ClusterLoadAssignment:
		out.name = m.GetClusterName()
		if first {
			check("endpoints "+out.name, m)
			if strings.HasSuffix(out.name, "-send") {
				for _, loc := range m.GetEndpoints() {
					r.stats.weightedEndpoints += len(loc.GetLbEndpoints())
				}
			}
		}
	case *listenerv3.Listener:
		out.name = m.GetName()
		if first {
			check("listener "+out.name, m)
		}
		for _, fc := range m.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				if tc := f.GetTypedConfig(); tc != nil {
					proxy("listener "+out.name, tc)
				}
			}
		}
	case *corev3.TypedExtensionConfig:
		out.name = m.GetName()
		if first {
			check("ECDS "+out.name, m)
		}
		proxy("ECDS "+out.name, m.GetTypedConfig())
	case *rmqv3.RouteConfiguration:
		out.name = m.GetName()
		if first {
			check("route "+out.name, m)
			for _, rt := range m.GetRoutes() {
				if got := rt.GetMatch().GetTopic().GetExact(); got != out.name {
					r.fail("route %s has a route for topic %q", out.name, got)
				}
			}
			if strings.HasSuffix(m.GetRoutes()[0].GetRoute().GetCluster(), "-send") {
				r.stats.weightedRoutes++
			}
		}
		out.clusters = routeClusterNames(m)
	}
	if first {
		r.stats.resources++
	}
	return out
}

func routeClusterNames(rc *rmqv3.RouteConfiguration) []string {
	var out []string
	for _, rt := range rc.GetRoutes() {
		if name := rt.GetRoute().GetCluster(); !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	return out
}

// validateDump validates the resources of a Preview or ConfigDump, rendered as JSON.
func (r *translateRun) validateDump(what string, dump map[string][]cache.DumpedResource) {
	r.t.Helper()
	for typeURL, rs := range dump {
		for _, d := range rs {
			var a anypb.Any
			if err := protojson.Unmarshal(d.Resource, &a); err != nil {
				r.fail("%s: %s %s does not decode from its JSON: %v", what, typeURL, d.Name, err)
			}
			if v := r.validate(typeURL, &a); v.name != d.Name {
				r.fail("%s: %s %q holds a resource named %q", what, typeURL, d.Name, v.name)
			}
		}
	}
}
