package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	rmqv3 "github.com/envoyproxy/go-control-plane/contrib/envoy/extensions/filters/network/rocketmq_proxy/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	gcpcache "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	gcpstream "github.com/envoyproxy/go-control-plane/pkg/server/stream/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/rocketpilot/rocketpilot/internal/promtest"
	"github.com/rocketpilot/rocketpilot/routing"
	"github.com/rocketpilot/rocketpilot/xds/translate"
)

func newTestCache(t *testing.T) (*Cache, *routing.Table) {
	t.Helper()
	tab := routing.NewTable()
	for _, name := range []string{"a", "b", "c"} {
		tab.Apply("ns", routing.Update{Topic: name, Route: &routing.Route{Members: []routing.Member{{Cluster: "C", BrokerName: "b-" + name,
			Perm: 6, ReadQueueNums: 4, WriteQueueNums: 4, Addrs: []routing.BrokerAddr{{ID: 0, Addr: "10.0.0.1:10911"}}}}}})
	}
	c, err := New(tab, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return c, tab
}

// open simulates a delta stream: the callbacks the server makes, then a watch for one request.
func open(t testing.TB, c *Cache, id int64, n *corev3.Node, typeURL string, names ...string) chan gcpcache.DeltaResponse {
	t.Helper()
	c.OnDeltaStreamOpen(context.Background(), id, "")
	req := &discovery.DeltaDiscoveryRequest{Node: n, TypeUrl: typeURL, ResourceNamesSubscribe: names}
	c.OnStreamDeltaRequest(id, req)
	ch := make(chan gcpcache.DeltaResponse, 4)
	if _, err := c.CreateDeltaWatch(req, gcpstream.NewDeltaSubscription(names, nil, nil, true), ch); err != nil {
		t.Fatal(err)
	}
	return ch
}

func scoped(id string, topics ...string) *corev3.Node {
	var vals []*structpb.Value
	for _, t := range topics {
		vals = append(vals, structpb.NewStringValue(t))
	}
	return &corev3.Node{Id: id, Metadata: &structpb.Struct{Fields: map[string]*structpb.Value{
		MetadataTopicsKey: structpb.NewListValue(&structpb.ListValue{Values: vals})}}}
}

// TestRoutesMaterialisedWhileUsed: a route exists in the cache, and is wanted from the sources, only while some
// stream subscribes to it.
func TestRoutesMaterialisedWhileUsed(t *testing.T) {
	c, tab := newTestCache(t)
	if len(c.topics) != 0 {
		t.Fatalf("%d routes materialised before any stream", len(c.topics))
	}
	open(t, c, 1, &corev3.Node{Id: "n1"}, translate.RouteType, "a")
	open(t, c, 2, &corev3.Node{Id: "n2"}, translate.RouteType, "a", "b")
	if len(c.topics) != 2 || !tab.Interest().Wanted("a") || !tab.Interest().Wanted("b") {
		t.Fatalf("materialised %d routes; wanted a=%v b=%v", len(c.topics), tab.Interest().Wanted("a"), tab.Interest().Wanted("b"))
	}
	c.OnDeltaStreamClosed(2, nil)
	if len(c.topics) != 1 || tab.Interest().Wanted("b") || !tab.Interest().Wanted("a") {
		t.Fatalf("after one stream closed: %d routes, wanted b=%v", len(c.topics), tab.Interest().Wanted("b"))
	}
	c.OnDeltaStreamClosed(1, nil)
	if len(c.topics) != 0 || len(c.nodes) != 0 || len(c.scopes) != 0 || len(c.subscribers) != 0 {
		t.Fatalf("leftovers: %d routes, %d nodes, %d scopes, %d indexed names", len(c.topics), len(c.nodes), len(c.scopes), len(c.subscribers))
	}
}

// TestNodesShareScopes: nodes with the same topics share one scope and its ECDS resource.
func TestNodesShareScopes(t *testing.T) {
	c, _ := newTestCache(t)
	r1 := open(t, c, 1, scoped("n1", "a", "b"), translate.ExtensionType, translate.ExtensionConfigName)
	r2 := open(t, c, 2, scoped("n2", "b", "a"), translate.ExtensionType, translate.ExtensionConfigName)
	open(t, c, 3, scoped("n3", "c"), translate.ExtensionType, translate.ExtensionConfigName)
	if len(c.scopes) != 2 {
		t.Fatalf("%d scopes for two distinct topic sets", len(c.scopes))
	}
	a, _ := (<-r1).GetDeltaDiscoveryResponse()
	b, _ := (<-r2).GetDeltaDiscoveryResponse()
	if a.Resources[0].Version != b.Resources[0].Version || &a.Resources[0].Resource.Value[0] != &b.Resources[0].Resource.Value[0] {
		t.Fatal("nodes of one scope do not share the marshalled ECDS resource")
	}
}

// TestApplyTouchesOnlyUsers: a change of a topic no stream uses costs nothing and answers no watch.
func TestApplyTouchesOnlyUsers(t *testing.T) {
	c, tab := newTestCache(t)
	ch := open(t, c, 1, &corev3.Node{Id: "n1"}, translate.RouteType, "a")
	<-ch
	// A new watch after the ACK, holding what was sent.
	sub := gcpstream.NewDeltaSubscription([]string{"a"}, nil, map[string]string{"a": c.topics["a"].route.version}, true)
	req := &discovery.DeltaDiscoveryRequest{TypeUrl: translate.RouteType}
	c.OnStreamDeltaRequest(1, req)
	if _, err := c.CreateDeltaWatch(req, sub, ch); err != nil {
		t.Fatal(err)
	}
	sub2 := tab.Subscribe()
	tab.Apply("ns", routing.Update{Topic: "zzz", Route: &routing.Route{Members: []routing.Member{{Cluster: "C", BrokerName: "x",
		Perm: 6, Addrs: []routing.BrokerAddr{{ID: 0, Addr: "10.0.0.9:10911"}}}}}})
	cs, _, _ := sub2.TryNext()
	c.Apply(cs)
	if _, ok := c.topics["zzz"]; ok {
		t.Fatal("an unused topic was materialised")
	}
	select {
	case r := <-ch:
		t.Fatalf("a watch on a answered for a change of zzz: %v", r)
	default:
	}
	tab.Apply("ns", routing.Update{Topic: "a"})
	cs, _, _ = sub2.TryNext()
	c.Apply(cs)
	select {
	case r := <-ch:
		resp, _ := r.GetDeltaDiscoveryResponse()
		if len(resp.RemovedResources) != 1 || resp.RemovedResources[0] != "a" {
			t.Fatalf("deletion of a: %v", resp)
		}
	default:
		t.Fatal("the watch on a was not answered when a was deleted")
	}
}

// TestRetiredClustersLeaveAfterRetention: a cluster no route names any more stays served for ClusterRetention,
// then Sweep removes it from the streams that hold it.
func TestRetiredClustersLeaveAfterRetention(t *testing.T) {
	tab := routing.NewTable()
	route := func(perm int32) *routing.Route {
		return &routing.Route{Members: []routing.Member{{Cluster: "C", BrokerName: "b", Perm: perm, ReadQueueNums: 4,
			WriteQueueNums: 4, Addrs: []routing.BrokerAddr{{ID: 0, Addr: "10.0.0.1:10911"}}}}}
	}
	tab.Apply("ns", routing.Update{Topic: "a", Route: route(6)})
	c, err := New(tab, Options{ClusterRetention: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	sub := tab.Subscribe()
	ch := open(t, c, 1, scoped("n1", "a"), translate.ClusterType, "*")
	first, _ := (<-ch).GetDeltaDiscoveryResponse()
	old := first.Resources[0].Name

	ack := func(resp *discovery.DeltaDiscoveryResponse, returned map[string]string) {
		req := &discovery.DeltaDiscoveryRequest{TypeUrl: translate.ClusterType, ResponseNonce: "n"}
		c.OnStreamDeltaRequest(1, req)
		if _, err := c.CreateDeltaWatch(req, gcpstream.NewDeltaSubscription(nil, nil, returned, true), ch); err != nil {
			t.Fatal(err)
		}
	}
	ack(first, map[string]string{old: first.Resources[0].Version})
	tab.Apply("ns", routing.Update{Topic: "a", Route: route(4)})
	cs, _, _ := sub.TryNext()
	c.Apply(cs)
	moved, _ := (<-ch).GetDeltaDiscoveryResponse()
	if len(moved.RemovedResources) != 0 || len(moved.Resources) != 1 || moved.Resources[0].Name == old {
		t.Fatalf("after the move: resources %v removed %v", moved.Resources, moved.RemovedResources)
	}
	ack(moved, map[string]string{old: first.Resources[0].Version, moved.Resources[0].Name: moved.Resources[0].Version})
	c.Sweep()
	select {
	case r := <-ch:
		t.Fatalf("swept before the retention ended: %v", r)
	default:
	}
	c.mu.Lock()
	c.clusters[old].retiredAt = time.Now().Add(-2 * time.Hour) // as if the retention had passed
	c.mu.Unlock()
	c.Sweep()
	gone, _ := (<-ch).GetDeltaDiscoveryResponse()
	if len(gone.RemovedResources) != 1 || gone.RemovedResources[0] != old {
		t.Fatalf("after the retention: %v", gone)
	}
}

// TestWaitVersion: WaitVersion returns once Run has applied the table up to the version, and gives up with ctx.
func TestWaitVersion(t *testing.T) {
	tab := routing.NewTable()
	c, err := New(tab, Options{})
	if err != nil {
		t.Fatal(err)
	}
	sub := tab.Subscribe()
	defer sub.Close()
	tab.Apply("ns", routing.Update{Topic: "a", Route: &routing.Route{Members: []routing.Member{{Cluster: "C", BrokerName: "b",
		Perm: 6, ReadQueueNums: 4, WriteQueueNums: 4, Addrs: []routing.BrokerAddr{{ID: 0, Addr: "10.0.0.1:10911"}}}}}})
	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := c.WaitVersion(short, tab.Version()); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("before Run applied the change: %v", err)
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go c.Run(ctx, sub, nil)
	wait, cancelWait := context.WithTimeout(ctx, 5*time.Second)
	defer cancelWait()
	if err := c.WaitVersion(wait, tab.Version()); err != nil {
		t.Fatal(err)
	}
	if len(c.clusters) == 0 {
		t.Fatal("WaitVersion returned before the broker set's cluster was built")
	}
}

// TestReplicasAgreeOnVersions: two caches over tables with the same content (two replicas) give every resource
// the same version, so that a client moving between replicas is sent nothing it already holds. The routes carry
// metadata_match structs and the listener's ECDS config packs them in an Any: marshalling must be deterministic
// at every level.
func TestReplicasAgreeOnVersions(t *testing.T) {
	build := func() map[string]map[string]string {
		c, _ := newTestCache(t)
		n := scoped("envoy", "a", "b", "c")
		for i, typeURL := range ServedTypes {
			open(t, c, int64(i+1), n, typeURL, "*")
		}
		out := map[string]map[string]string{}
		dump, ok := c.ConfigDump("envoy")
		if !ok {
			t.Fatal("no dump")
		}
		for typeURL, rs := range dump {
			out[typeURL] = map[string]string{}
			for _, r := range rs {
				out[typeURL][r.Name] = r.Version
			}
		}
		return out
	}
	first := build()
	if len(first[translate.ExtensionType]) != 1 || len(first[translate.RouteType]) != 3 {
		t.Fatalf("the dump lacks resources: %v", first)
	}
	for replica := range 10 {
		if got := build(); !reflect.DeepEqual(got, first) {
			t.Fatalf("replica %d serves other versions:\n%v\nthan the first:\n%v", replica+1, got, first)
		}
	}
}

// TestRetentionRecordsExpire: the per-node record of when clusters left a node's view outlives the node's streams,
// for the retention and one more period while no stream holds the cluster, then goes.
func TestRetentionRecordsExpire(t *testing.T) {
	const retention = 50 * time.Millisecond
	tab := routing.NewTable()
	route := func(broker string) *routing.Route {
		return &routing.Route{Members: []routing.Member{{Cluster: "C", BrokerName: broker, Perm: 6, ReadQueueNums: 4,
			WriteQueueNums: 4, Addrs: []routing.BrokerAddr{{ID: 0, Addr: "10.0.0.1:10911"}}}}}
	}
	tab.Apply("ns", routing.Update{Topic: "a", Route: route("b1")}, routing.Update{Topic: "other", Route: route("b1")})
	c, err := New(tab, Options{ClusterRetention: retention})
	if err != nil {
		t.Fatal(err)
	}
	sub := tab.Subscribe()
	ch := open(t, c, 1, scoped("n1", "a"), translate.ClusterType, "*")
	<-ch
	req := &discovery.DeltaDiscoveryRequest{TypeUrl: translate.ClusterType, ResponseNonce: "1"}
	c.OnStreamDeltaRequest(1, req)
	if _, err := c.CreateDeltaWatch(req, gcpstream.NewDeltaSubscription(nil, nil, nil, true), ch); err != nil {
		t.Fatal(err)
	}
	tab.Apply("ns", routing.Update{Topic: "a", Route: route("b2")}) // a leaves the shared cluster, which lives on
	cs, _, _ := sub.TryNext()
	c.Apply(cs)
	<-ch
	records := func() int {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.retention)
	}
	if records() != 1 {
		t.Fatalf("%d retention records after the node's cluster left its view, want 1", records())
	}
	c.OnDeltaStreamClosed(1, nil)
	if !c.Idle() {
		t.Fatal("stream state left after the stream closed")
	}
	if records() != 1 {
		t.Fatal("the retention record went with the stream")
	}
	time.Sleep(2*retention + 10*time.Millisecond)
	c.Sweep()
	if records() != 0 {
		t.Fatalf("%d retention records after twice the retention with no stream", records())
	}
}

// TestSplicedConfigEqualsTranslation: the ECDS config a scope is served, spliced from its routes' encodings, is the
// translation of the table's routes for the scope marshalled deterministically, with and without a weighted
// TopicRoute, after a change of one topic too.
func TestSplicedConfigEqualsTranslation(t *testing.T) {
	tab := routing.NewTable()
	var topics []string
	for i := range 60 {
		name := fmt.Sprintf("s%02d", i)
		topics = append(topics, name)
		members := []routing.Member{{Cluster: "C", BrokerName: fmt.Sprintf("b%d", i%5), Perm: 6, ReadQueueNums: 4, WriteQueueNums: 4,
			Addrs: []routing.BrokerAddr{{ID: 0, Addr: "10.0.0.1:10911"}, {ID: 1, Addr: "10.0.0.2:10911"}}},
			{Cluster: "D", BrokerName: fmt.Sprintf("b%d", 5+i%3), Perm: int32(4 + 2*(i%2)), ReadQueueNums: 8, WriteQueueNums: 8,
				Addrs: []routing.BrokerAddr{{ID: 0, Addr: "10.0.1.1:10911"}}}}
		tab.Apply("ns", routing.Update{Topic: name, Route: &routing.Route{Members: members}})
	}
	c, err := New(tab, Options{})
	if err != nil {
		t.Fatal(err)
	}
	sub := tab.Subscribe()
	open(t, c, 1, scoped("envoy", topics...), translate.ExtensionType, translate.ExtensionConfigName)
	check := func(when string) {
		t.Helper()
		var routes []*rmqv3.RouteConfiguration
		for _, name := range topics { // sorted already
			routes = append(routes, translate.TopicRoute(tab.Topic(name)))
		}
		want, err := translate.ExtensionConfig(translate.ProxyConfig(translate.ProxyOptions{StatPrefix: "rocketmq"}, routes))
		if err != nil {
			t.Fatal(err)
		}
		wantBody, _ := proto.MarshalOptions{Deterministic: true}.Marshal(want)
		c.mu.Lock()
		got := c.nodes[c.nodeFor(scoped("envoy", topics...)).key].scope.ecds
		c.mu.Unlock()
		if !bytes.Equal(got.body, wantBody) {
			t.Fatalf("%s: the served config (%d bytes) is not the translated one (%d bytes)", when, len(got.body), len(wantBody))
		}
	}
	check("first")
	apply := func() {
		cs, _, _ := sub.TryNext()
		c.Apply(cs)
	}
	tab.SetPolicies([]routing.Policy{{Name: "ns/w", Match: routing.TopicMatch{Prefix: []string{"s1"}}, Send: []routing.Backend{
		{BrokerNames: []string{"b0", "b1"}, Weight: 70, Weighted: true}, {BrokerNames: []string{"b5"}, Weight: 30, Weighted: true}}}})
	apply()
	check("weighted")
	tab.Apply("ns", routing.Update{Topic: "s07"})
	apply()
	topics = slices.DeleteFunc(topics, func(s string) bool { return s == "s07" })
	check("a topic removed")
}

// recvNow takes the response a watch has queued, failing if there is none.
func recvNow(t *testing.T, ch chan gcpcache.DeltaResponse) *discovery.DeltaDiscoveryResponse {
	t.Helper()
	select {
	case r := <-ch:
		out, _ := r.GetDeltaDiscoveryResponse()
		return out
	default:
		t.Fatal("no response")
		return nil
	}
}

// rewatch is a stream's next request of a type (its ACK): a new watch.
func rewatch(t *testing.T, c *Cache, id int64, typeURL string, ch chan gcpcache.DeltaResponse) {
	t.Helper()
	req := &discovery.DeltaDiscoveryRequest{TypeUrl: typeURL, ResponseNonce: "ack"}
	c.OnStreamDeltaRequest(id, req)
	if _, err := c.CreateDeltaWatch(req, nil, ch); err != nil {
		t.Fatal(err)
	}
}

// TestSweptClusterBackLiveGetsAFreshRetention: a cluster removed when its retention ended, then live again (its
// broker set came back), is kept for a whole retention the next time it leaves a node's view.
func TestSweptClusterBackLiveGetsAFreshRetention(t *testing.T) {
	tab := routing.NewTable()
	route := func(broker string) *routing.Route {
		return &routing.Route{Members: []routing.Member{{Cluster: "C", BrokerName: broker, Perm: 6, ReadQueueNums: 4,
			WriteQueueNums: 4, Addrs: []routing.BrokerAddr{{ID: 0, Addr: "10.0.0.1:10911"}}}}}
	}
	tab.Apply("ns", routing.Update{Topic: "a", Route: route("b1")})
	c, err := New(tab, Options{ClusterRetention: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	sub := tab.Subscribe()
	apply := func(u routing.Update) {
		tab.Apply("ns", u)
		cs, _, _ := sub.TryNext()
		c.Apply(cs)
	}
	ch := open(t, c, 1, scoped("n1", "a"), translate.ClusterType, "*")
	x := recvNow(t, ch).Resources[0].Name
	rewatch(t, c, 1, translate.ClusterType, ch)
	apply(routing.Update{Topic: "a", Route: route("b2")}) // x retired, kept
	if r := recvNow(t, ch); len(r.RemovedResources) != 0 {
		t.Fatalf("removed at once: %v", r.RemovedResources)
	}
	rewatch(t, c, 1, translate.ClusterType, ch)
	c.mu.Lock() // as if the retention had passed
	c.clusters[x].retiredAt = time.Now().Add(-2 * time.Hour)
	for _, rec := range c.retention {
		if l, ok := rec.left[x]; ok {
			l.at = time.Now().Add(-2 * time.Hour)
			rec.left[x] = l
		}
	}
	c.mu.Unlock()
	c.Sweep()
	if r := recvNow(t, ch); !slices.Equal(r.RemovedResources, []string{x}) {
		t.Fatalf("after the retention: %v", r)
	}
	rewatch(t, c, 1, translate.ClusterType, ch)
	apply(routing.Update{Topic: "a", Route: route("b1")}) // b1's broker set is back: x live and in the view again
	if r := recvNow(t, ch); len(r.Resources) != 1 || r.Resources[0].Name != x {
		t.Fatalf("x back: %v", r)
	}
	rewatch(t, c, 1, translate.ClusterType, ch)
	apply(routing.Update{Topic: "a", Route: route("b3")}) // x leaves the view again
	if r := recvNow(t, ch); slices.Contains(r.RemovedResources, x) {
		t.Fatalf("%s removed at once when it left the view a second time; a new retention begins", x)
	}
}

// TestDeclaredClustersAreBounded: clusters a reconnecting client declares that this replica never served are kept for
// the retention, but client-chosen names cannot hold memory without bound: at most maxDeclaredPerNode a node (the
// rest are removed at once), counted in rocketpilot_xds_retained_clusters, and gone with twice the retention.
func TestDeclaredClustersAreBounded(t *testing.T) {
	const retention = 50 * time.Millisecond
	tab := routing.NewTable()
	tab.Apply("ns", routing.Update{Topic: "a", Route: &routing.Route{Members: []routing.Member{{Cluster: "C", BrokerName: "b1",
		Perm: 6, ReadQueueNums: 4, WriteQueueNums: 4, Addrs: []routing.BrokerAddr{{ID: 0, Addr: "10.0.0.1:10911"}}}}}})
	c, err := New(tab, Options{ClusterRetention: retention})
	if err != nil {
		t.Fatal(err)
	}
	const made = 3 * maxDeclaredPerNode
	declared := make(map[string]string, made)
	for i := range made {
		declared[fmt.Sprintf("rmq-x-%016x", i)] = "0000000000000000"
	}
	for id := int64(1); id <= 3; id++ {
		c.OnDeltaStreamOpen(context.Background(), id, "")
		req := &discovery.DeltaDiscoveryRequest{Node: scoped(fmt.Sprint("made-up-", id), "a"), TypeUrl: translate.ClusterType,
			ResourceNamesSubscribe: []string{"*"}, InitialResourceVersions: declared}
		if err := c.OnStreamDeltaRequest(id, req); err != nil {
			t.Fatal(err)
		}
		ch := make(chan gcpcache.DeltaResponse, 1)
		if _, err := c.CreateDeltaWatch(req, nil, ch); err != nil {
			t.Fatal(err)
		}
		if r := recvNow(t, ch); len(r.RemovedResources) != made-maxDeclaredPerNode {
			t.Fatalf("node %d: %d of %d declared names removed at once, want all but %d", id, len(r.RemovedResources), made, maxDeclaredPerNode)
		}
		c.OnDeltaStreamClosed(id, nil)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	if got := promtest.Sum(promtest.Families(t, reg), "rocketpilot_xds_retained_clusters", map[string]string{"origin": "declared"}); got != 3*maxDeclaredPerNode {
		t.Fatalf("rocketpilot_xds_retained_clusters{origin=declared} = %v, want %d", got, 3*maxDeclaredPerNode)
	}
	time.Sleep(2*retention + 10*time.Millisecond)
	c.Sweep()
	if got := promtest.Sum(promtest.Families(t, reg), "rocketpilot_xds_retained_clusters", map[string]string{"origin": "declared"}); got != 0 {
		t.Fatalf("after twice the retention %v declared records remain", got)
	}
}
