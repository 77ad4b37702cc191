package controllers

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/rocketpilot/rocketpilot/crds/v1alpha1"
	"github.com/rocketpilot/rocketpilot/nameserver/embedded"
	"github.com/rocketpilot/rocketpilot/nameserver/watcher"
	"github.com/rocketpilot/rocketpilot/routing"
)

type fileStack struct {
	dir     string
	table   *routing.Table
	sources *Sources
	fs      *FileSource
}

func newFileStack(t *testing.T) *fileStack {
	t.Helper()
	dir := t.TempDir()
	table := routing.NewTable()
	sources := NewSources(table, watcher.Options{BrokerInterval: 100 * time.Millisecond, RateLimit: 1e6}, nil)
	t.Cleanup(sources.Close)
	fs, err := NewFileSource(dir, table, sources, NewPolicies(table), nil)
	if err != nil {
		t.Fatal(err)
	}
	return &fileStack{dir: dir, table: table, sources: sources, fs: fs}
}

func (s *fileStack) write(t *testing.T, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(s.dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (s *fileStack) load(t *testing.T) []FileResourceStatus {
	t.Helper()
	if err := s.fs.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s.fs.Status()
}

func (s *fileStack) sync(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.sources.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
}

// demoSource starts the demo NameServer and writes a NameServerSource of it to the directory.
func (s *fileStack) demoSource(t *testing.T) {
	t.Helper()
	ns := demoNameServer(t)
	s.write(t, "source.yaml", "apiVersion: rocketpilot.io/v1alpha1\nkind: NameServerSource\nmetadata:\n  name: demo\nspec:\n  addresses: ["+ns.Addr()+"]\n")
}

const weighted = `
apiVersion: rocketpilot.io/v1alpha1
kind: TopicRoute
metadata:
  name: migrate
spec:
  topics:
    exact: [demo-inventory-003]
  send:
    backends:
      - {brokerCluster: DefaultCluster, weight: 80}
      - {brokerCluster: ClusterB, weight: 20}
`

func TestFileSourceAppliesTheDirectory(t *testing.T) {
	ns := demoNameServer(t)
	s := newFileStack(t)
	s.write(t, "source.yaml", "apiVersion: rocketpilot.io/v1alpha1\nkind: NameServerSource\nmetadata:\n  name: demo\nspec:\n  addresses: ["+ns.Addr()+"]\n")
	s.write(t, "policy.yml", weighted+"---\n# a binding in the same file\n"+`
apiVersion: rocketpilot.io/v1alpha1
kind: TopicBinding
metadata: {name: orders, namespace: shop}
spec:
  nodeIDs: ["orders-*"]
  topics: [TopicTest]
`)
	s.write(t, "notes.txt", "not yaml: ignored")
	report := s.load(t)
	if len(report) != 3 {
		t.Fatalf("report %+v", report)
	}
	for _, r := range report {
		if !r.Accepted {
			t.Fatalf("%s %s rejected: %s", r.Kind, r.Name, r.Error)
		}
	}
	s.sync(t)
	if m := s.table.Topic("demo-inventory-003").BrokerSet.Member("broker-d"); m == nil || m.Weight == 0 {
		t.Fatalf("the weighted policy is not applied: %+v", m)
	}
	if got := s.table.Bound(routing.Proxy{ID: "orders-1"}); len(got) != 1 || got[0] != embedded.DemoTopic {
		t.Fatalf("bound %v", got)
	}
	byKind := map[string]any{}
	for _, r := range s.fs.Status() {
		byKind[r.Kind] = r.Status
	}
	if src, _ := byKind["NameServerSource"].(v1alpha1.NameServerSourceStatus); src.Topics != int32(ns.TopicCount()) {
		t.Fatalf("source status %+v", byKind["NameServerSource"])
	}
	if tr, _ := byKind["TopicRoute"].(v1alpha1.TopicRouteStatus); tr.MatchedTopics != 1 || len(tr.Conditions) != 3 {
		t.Fatalf("TopicRoute status %+v", byKind["TopicRoute"])
	}
}

func TestFileSourceRejectsBadDocumentsAndKeepsTheLastGood(t *testing.T) {
	s := newFileStack(t)
	s.demoSource(t)
	s.write(t, "route.yaml", weighted)
	s.load(t)
	s.sync(t)
	good := s.table.Topic("demo-inventory-003").BrokerSet

	for _, c := range []struct{ doc, want string }{
		{strings.Replace(weighted, "- {brokerCluster: ClusterB, weight: 20}", "- {brokerCluster: ClusterB}", 1), "give every send backend a weight, or none"},
		{strings.Replace(weighted, "send:", "consume:", 1), "weights apply to send only"},
		{strings.Replace(weighted, "exact:", "exactly:", 1), `spec.topics.exactly: Invalid value: "": unknown field`},
		{strings.Replace(weighted, "demo-inventory-003", "has space", 1), "spec.topics.exact[0]"},
		{strings.Replace(weighted, "TopicRoute", "TopicRule", 1), `unknown kind "TopicRule"`},
		{strings.Replace(weighted, "exact: [demo-inventory-003]", `regex: "demo-(["`, 1), "spec.topics.regex"},
		{strings.Replace(weighted, "name: migrate", "name: Migrate_1", 1), "metadata.name"},
		{"kind: [unclosed", "yaml"},
		{"apiVersion: rocketpilot.io/v1alpha1\nkind: NameServerSource\nmetadata: {name: op}\nspec: {nameServiceRef: {name: rocketmq}}\n",
			"spec.nameServiceRef needs the Kubernetes API"},
	} {
		s.write(t, "route.yaml", c.doc)
		report := s.load(t)
		var got *FileResourceStatus
		for i := range report {
			if report[i].File == "route.yaml" {
				got = &report[i]
			}
		}
		if got == nil || got.Accepted || !strings.Contains(got.Error, c.want) {
			t.Errorf("want a rejection with %q, got %+v", c.want, got)
		}
		if s.table.Topic("demo-inventory-003").BrokerSet != good {
			t.Fatalf("a rejected document (%q) changed the served route", c.want)
		}
	}
	// An empty file (one being written, say) keeps what it defined.
	s.write(t, "route.yaml", weighted)
	s.load(t)
	s.write(t, "route.yaml", "")
	report := s.load(t)
	if s.table.Topic("demo-inventory-003").BrokerSet.Member("broker-d").Weight == 0 || report[0].Accepted {
		t.Fatalf("an empty file withdrew its policy: %+v", report)
	}
	// Removing the file removes the policy: the NameServer's route comes back.
	if err := os.Remove(filepath.Join(s.dir, "route.yaml")); err != nil {
		t.Fatal(err)
	}
	s.load(t)
	if m := s.table.Topic("demo-inventory-003").BrokerSet.Member("broker-d"); m == nil || m.Weight != 0 {
		t.Fatalf("the policy outlived its file: %+v", m)
	}
}

func TestFileSourceFollowsChanges(t *testing.T) {
	s := newFileStack(t)
	s.demoSource(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.load(t)
	go s.fs.Run(ctx, 20*time.Millisecond)
	s.sync(t)
	s.write(t, "drain.yaml", `
apiVersion: rocketpilot.io/v1alpha1
kind: TopicRoute
metadata: {name: drain}
spec:
  topics: {exact: [TopicTest]}
  drain: {brokerNames: [broker-b]}
`)
	eventually(t, "the new file applied", func() (bool, string) {
		m := s.table.Topic(embedded.DemoTopic).BrokerSet.Member("broker-b")
		return m != nil && !m.Writable(), ""
	})
}

func TestExamplesAreValid(t *testing.T) {
	s := newFileStack(t)
	examples, _ := filepath.Glob(filepath.Join("..", "examples", "*.yaml"))
	if len(examples) == 0 {
		t.Fatal("no examples")
	}
	for _, e := range examples {
		b, err := os.ReadFile(e)
		if err != nil {
			t.Fatal(err)
		}
		s.write(t, filepath.Base(e), string(b))
	}
	for _, r := range s.load(t) {
		if !r.Accepted {
			t.Errorf("%s: %s %s rejected: %s", r.File, r.Kind, r.Name, r.Error)
		}
	}
}

// TestRecreatedTopicRouteIsApplied: a TopicRoute deleted and created again under the same name starts at
// generation 1 again; its UID tells the versions apart, so the new spec is applied.
func TestRecreatedTopicRouteIsApplied(t *testing.T) {
	s := newFileStack(t)
	s.demoSource(t)
	s.load(t)
	s.sync(t)
	policies := NewPolicies(s.table)
	tr := func(uid, broker string) *v1alpha1.TopicRoute {
		r := &v1alpha1.TopicRoute{Spec: v1alpha1.TopicRouteSpec{Topics: v1alpha1.TopicSelector{Exact: []string{embedded.DemoTopic}},
			Drain: &v1alpha1.Drain{BrokerNames: []string{broker}}}}
		r.Namespace, r.Name, r.UID, r.Generation = "ns", "drain", types.UID(uid), 1
		return r
	}
	first, again := tr("uid-1", "broker-a"), tr("uid-2", "broker-b")
	if err := ApplyTopicRoute(policies, s.table, first, objectVersion(first)); err != nil {
		t.Fatal(err)
	}
	if err := ApplyTopicRoute(policies, s.table, again, objectVersion(again)); err != nil {
		t.Fatal(err)
	}
	if a, b := s.table.Topic(embedded.DemoTopic).BrokerSet.Member("broker-a"), s.table.Topic(embedded.DemoTopic).BrokerSet.Member("broker-b"); !a.Writable() || b.Writable() {
		t.Fatalf("the recreated TopicRoute is not applied: a %+v, b %+v", a, b)
	}
}

// TestPopRuleReachesTheTopic: a TopicRoute's pop rule, from a file, is carried by the topics it matches, its groups
// sorted and its invisible time the schema's default when left out; the topic keeps the broker set it had.
func TestPopRuleReachesTheTopic(t *testing.T) {
	s := newFileStack(t)
	s.demoSource(t)
	s.load(t)
	s.sync(t)
	before := s.table.Topic(embedded.DemoTopic)
	s.write(t, "pop.yaml", `
apiVersion: rocketpilot.io/v1alpha1
kind: TopicRoute
metadata: {name: pop}
spec:
  topics: {exact: [TopicTest]}
  pop: {consumerGroups: [orders-cg, billing-cg]}
`)
	for _, r := range s.load(t) {
		if !r.Accepted {
			t.Fatalf("%s %s rejected: %s", r.Kind, r.Name, r.Error)
		}
	}
	got := s.table.Topic(embedded.DemoTopic)
	want := &routing.PopPolicy{ConsumerGroups: []string{"billing-cg", "orders-cg"}, InvisibleTime: 60 * time.Second}
	if !got.Pop.Equal(want) || got.BrokerSet != before.BrokerSet {
		t.Fatalf("topic under the pop rule: pop %+v, broker set %s (was %s); want pop %+v, the same broker set",
			got.Pop, got.BrokerSet.Hash, before.BrokerSet.Hash, want)
	}
}

// A config directory that is a file, or is not there, is refused with what it is: not with a nil error in brackets.
func TestFileSourceNeedsADirectory(t *testing.T) {
	s := newFileStack(t)
	s.write(t, "route.yaml", "")
	for path, want := range map[string]string{
		filepath.Join(s.dir, "route.yaml"): "a file, not a directory (give the directory that holds it)",
		filepath.Join(s.dir, "nope"):       "no such file or directory",
	} {
		_, err := NewFileSource(path, s.table, s.sources, NewPolicies(s.table), nil)
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "<nil>") {
			t.Errorf("NewFileSource(%s): %v, want %q", path, err, want)
		}
	}
}
