package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	rmqv3 "github.com/envoyproxy/go-control-plane/contrib/envoy/extensions/filters/network/rocketmq_proxy/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/rocketpilot/rocketpilot/nameserver/embedded"
	"github.com/rocketpilot/rocketpilot/routing"
	"github.com/rocketpilot/rocketpilot/xds/cache"
	"github.com/rocketpilot/rocketpilot/xds/translate"
)

func TestAdminAPI(t *testing.T) {
	s := startStack(t, embedded.LoadDemo)
	ready := false
	changes := &ChangeLog{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go changes.Follow(ctx, s.table)
	admin := &Admin{Table: s.table, Cache: s.cache, Version: "test", Ready: func() bool { return ready }, Changes: changes}
	srv := httptest.NewServer(admin.Handler())
	defer srv.Close()
	get := func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("readyz before sync: %d", code)
	}
	ready = true
	if code, _ := get("/readyz"); code != http.StatusOK {
		t.Fatalf("readyz after sync: %d", code)
	}
	var topics TopicList
	_, body := get("/api/v1/topics?prefix=Topic")
	if err := json.Unmarshal([]byte(body), &topics); err != nil {
		t.Fatal(err)
	}
	if topics.Total != 1 || topics.Topics[0].Name != "TopicTest" || len(topics.Topics[0].Brokers) != 2 {
		t.Fatalf("topics?prefix=Topic: %s", body)
	}
	if _, body := get("/api/v1/topics?limit=5"); !strings.Contains(body, `"total": `+itoa(len(s.ns.Topics()))) {
		t.Fatalf("total of all topics missing: %s", body[:200])
	}
	if code, body := get("/api/v1/routes/TopicTest"); code != 200 || !strings.Contains(body, topics.Topics[0].Cluster) {
		t.Fatalf("route: %d %s", code, body)
	}
	if code, body := get("/api/v1/clusters"); code != 200 || !strings.Contains(body, `"brokerName": "broker-a"`) {
		t.Fatalf("clusters: %d", code)
	}
	if code, _ := get("/api/v1/topics/no-such-topic"); code != http.StatusNotFound {
		t.Fatalf("unknown topic: %d", code)
	}
	if code, _ := get("/api/v1/topics?limit=x"); code != http.StatusBadRequest {
		t.Fatalf("bad limit: %d", code)
	}
	if code, _ := get("/api/v1/config_dump?node=nobody"); code != http.StatusNotFound {
		t.Fatalf("config dump of an unknown node: %d", code)
	}
	// A change to TopicTest shows in its chain, with what its source reported.
	testTopic(s, "TopicTest", 6, "b1")
	var chain TopicChain
	waitFor(t, "the change in TopicTest's chain", func() bool {
		_, body := get("/api/v1/topics/TopicTest")
		return json.Unmarshal([]byte(body), &chain) == nil && len(chain.Changes) > 0
	})
	if len(chain.Sources) == 0 || !slices.Contains(chain.Changes[len(chain.Changes)-1].Names, "TopicTest") {
		t.Fatalf("chain: %+v", chain)
	}
	for _, path := range []string{"/healthz", "/api/v1/version", "/api/v1/brokersets", "/api/v1/brokers", "/api/v1/proxies", "/api/v1/sources",
		"/api/v1/policies", "/api/v1/resources", "/api/v1/changes"} {
		if code, _ := get(path); code != http.StatusOK {
			t.Fatalf("%s: %d", path, code)
		}
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// adminOver serves the admin API of table and c until the test ends, and returns a GET of a path's body.
func adminOver(t *testing.T, table *routing.Table, c *cache.Cache) func(path string) (int, []byte) {
	t.Helper()
	return adminServe(t, &Admin{Table: table, Cache: c})
}

// adminServe serves a's admin API until the test ends, and returns a GET of a path's body.
func adminServe(t *testing.T, a *Admin) func(path string) (int, []byte) {
	t.Helper()
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(srv.Close)
	return func(path string) (int, []byte) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
}

func brokerRoute(broker, addr string) *routing.Route {
	return &routing.Route{Members: []routing.Member{{Cluster: "C", BrokerName: broker, Perm: 6, ReadQueueNums: 4, WriteQueueNums: 4,
		Addrs: []routing.BrokerAddr{{ID: 0, Addr: addr}}}}}
}

// The admin API shows a broker's address as the served endpoint has it: an IPv6 host in brackets, as
// net.JoinHostPort writes it, not "::1:10911".
func TestAdminClustersIPv6(t *testing.T) {
	table := routing.NewTable()
	table.Apply("test", routing.Update{Topic: "T6", Route: brokerRoute("b6", "[::1]:10911")})
	c, err := cache.New(table, cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	get := adminOver(t, table, c)
	var rows []ClusterRow
	if code, body := get("/api/v1/clusters"); code != http.StatusOK || json.Unmarshal(body, &rows) != nil {
		t.Fatalf("clusters: %d %s", code, body)
	}
	if len(rows) != 1 || len(rows[0].Endpoints) != 1 || rows[0].Endpoints[0].Address != "[::1]:10911" {
		t.Fatalf("clusters: want one endpoint at [::1]:10911, got %+v", rows)
	}
}

// The admin API shows what the cache holds and serves, not what the table would translate to now: while a change
// of the table is not applied yet (the cache applies changes a coalescing window later), a topic's route, cluster
// and endpoints are those its streams were sent, and the clusters are those served.
func TestAdminShowsServedNotRecomputed(t *testing.T) {
	table := routing.NewTable()
	table.Apply("test", routing.Update{Topic: "T", Route: brokerRoute("b1", "10.0.0.1:10911")})
	c, addr := serveUnrun(t, table)
	d := openDelta(t, addr, "n1", "T")
	d.subscribe(translate.RouteType, "T")
	if r := d.next(); len(r.Resources) != 1 {
		t.Fatalf("route of T: %v", names(r))
	}
	served := table.Topic("T").BrokerSet
	oldCluster := translate.ClusterName(served)

	// T moves to another broker; the cache has not applied it.
	table.Apply("test", routing.Update{Topic: "T", Route: brokerRoute("b2", "10.0.0.2:10911")})
	newCluster := translate.ClusterName(table.Topic("T").BrokerSet)

	get := adminOver(t, table, c)
	dump, ok := c.ConfigDump("n1")
	if !ok || len(dump[translate.RouteType]) != 1 {
		t.Fatalf("config dump of n1: %v", dump)
	}
	var want, got rmqv3.RouteConfiguration
	var sent anypb.Any
	if err := protojson.Unmarshal(dump[translate.RouteType][0].Resource, &sent); err != nil {
		t.Fatal(err)
	}
	if err := sent.UnmarshalTo(&want); err != nil {
		t.Fatal(err)
	}
	_, body := get("/api/v1/routes/T")
	if err := protojson.Unmarshal(body, &got); err != nil {
		t.Fatalf("route: %v: %s", err, body)
	}
	if !proto.Equal(&want, &got) {
		t.Errorf("GET /api/v1/routes/T is not the route n1 was sent:\nsent  %v\nshown %v", &want, &got)
	}
	var chain TopicChain
	if _, body := get("/api/v1/topics/T"); json.Unmarshal(body, &chain) != nil {
		t.Fatalf("topic: %s", body)
	}
	got.Reset()
	if err := protojson.Unmarshal(chain.Route, &got); err != nil || !proto.Equal(&want, &got) {
		t.Errorf("the route in T's chain is not the one n1 was sent: %s", chain.Route)
	}
	if !strings.Contains(string(chain.Cluster), oldCluster) || !strings.Contains(string(chain.Endpoints), "10.0.0.1") {
		t.Errorf("T's chain: want the served cluster %s at 10.0.0.1, got %s %s", oldCluster, chain.Cluster, chain.Endpoints)
	}
	var rows []ClusterRow
	if _, body := get("/api/v1/clusters"); json.Unmarshal(body, &rows) != nil {
		t.Fatalf("clusters: %s", body)
	}
	var shown []string
	for _, r := range rows {
		shown = append(shown, r.Name)
	}
	if !slices.Equal(shown, []string{oldCluster}) {
		t.Errorf("clusters: want the served %s only, got %v", oldCluster, shown)
	}

	// Once the cache applies the change, the admin API shows the new route and cluster.
	c.Apply(routing.ChangeSet{Version: table.Version(), Topics: map[string]struct{}{"T": {}},
		BrokerSets: map[string]struct{}{served.Hash: {}, table.Topic("T").BrokerSet.Hash: {}}})
	if _, body := get("/api/v1/routes/T"); !strings.Contains(string(body), newCluster) {
		t.Errorf("after the change is applied, route: want %s, got %s", newCluster, body)
	}
}

// The admin API's answers are its response types, the ones rocketctl decodes: each answer decodes into its type
// with no key left over, and that value written again is the answer byte for byte. The topic is given everything
// its chain can show (a policy overriding another, with a pop rule, a weighted send cluster, changes), so no field
// goes unchecked.
func TestAdminResponseTypesRoundTrip(t *testing.T) {
	table := routing.NewTable()
	route := func(queues int32) *routing.Route {
		return &routing.Route{Members: []routing.Member{
			{Cluster: "C", BrokerName: "b1", Perm: 6, ReadQueueNums: queues, WriteQueueNums: queues, Addrs: []routing.BrokerAddr{{ID: 0, Addr: "10.0.0.1:10911"}}},
			{Cluster: "D", BrokerName: "b2", Perm: 6, ReadQueueNums: 4, WriteQueueNums: 4, Addrs: []routing.BrokerAddr{{ID: 0, Addr: "[::1]:10911"}}}}}
	}
	table.Apply("test", routing.Update{Topic: "T", Route: route(4)}, routing.Update{Topic: "U", Route: brokerRoute("b3", "10.0.0.3:10911")})
	table.SetPolicies([]routing.Policy{
		{Name: "ns/weighted", Match: routing.TopicMatch{Exact: []string{"T"}},
			Send: []routing.Backend{{BrokerCluster: "C", Weight: 3, Weighted: true}, {BrokerCluster: "D", Weight: 1, Weighted: true}},
			Pop:  routing.NewPopPolicy([]string{"g2", "g1"}, 8*time.Second)},
		{Name: "ns/older", Created: time.Unix(1, 0), Match: routing.TopicMatch{Prefix: []string{"T"}}},
	})
	changes := &ChangeLog{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go changes.Follow(ctx, table)
	var queues int32 = 4
	waitFor(t, "a change of T in the change log", func() bool {
		queues = 12 - queues // 4, 8, 4…: a change each time, until the log follows the table
		table.Apply("test", routing.Update{Topic: "T", Route: route(queues)})
		return len(changes.Recent("T", 0)) > 0
	})
	c, err := cache.New(table, cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	get := adminServe(t, &Admin{Table: table, Cache: c, Changes: changes, Version: "v1"})

	roundTrip := func(path string, want int, v any) {
		t.Helper()
		code, body := get(path)
		if code != want {
			t.Fatalf("%s: %d %s", path, code, body)
		}
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(v); err != nil {
			t.Fatalf("%s into %T: %v\n%s", path, v, err, body)
		}
		var again bytes.Buffer
		enc := json.NewEncoder(&again)
		if code == http.StatusOK {
			enc.SetIndent("", "  ")
		}
		if err := enc.Encode(v); err != nil {
			t.Fatal(err)
		}
		if again.String() != string(body) {
			t.Errorf("%s: %T written again differs from the answer:\nanswer %s\nagain  %s", path, v, body, again.String())
		}
	}
	var chain TopicChain
	roundTrip("/api/v1/topics/T", http.StatusOK, &chain)
	if chain.Policy == nil || chain.Policy.TopicRoute != "ns/weighted" || !slices.Equal(chain.Policy.Overridden, []string{"ns/older"}) ||
		chain.Cluster == nil || chain.Endpoints == nil || chain.SendEndpoints == nil || len(chain.Changes) == 0 ||
		len(chain.Members) != 2 || len(chain.Sources) != 1 || chain.Topic.Policy != "ns/weighted" ||
		!chain.Policy.Pop.Equal(&routing.PopPolicy{ConsumerGroups: []string{"g1", "g2"}, InvisibleTime: 8 * time.Second}) {
		t.Errorf("T's chain lacks a part: %+v", chain)
	}
	roundTrip("/api/v1/topics/U", http.StatusOK, &TopicChain{})
	roundTrip("/api/v1/topics", http.StatusOK, &TopicList{})
	roundTrip("/api/v1/brokersets", http.StatusOK, &[]BrokerSetRow{})
	roundTrip("/api/v1/clusters", http.StatusOK, &[]ClusterRow{})
	roundTrip("/api/v1/version", http.StatusOK, &VersionInfo{})
	roundTrip("/api/v1/policies", http.StatusOK, &[]PolicyRow{})
	roundTrip("/api/v1/changes", http.StatusOK, &[]Change{})
	roundTrip("/api/v1/topics/nope", http.StatusNotFound, &ErrorBody{})
	roundTrip("/api/v1/topics?limit=-1", http.StatusBadRequest, &ErrorBody{})
}

// TestAdminShowsAbsentWhereStreamsWereToldAbsent: a topic a stream subscribed to before the cache knew it was
// answered absent; while the cache has not applied the table's new topic, the admin API shows no route for it, not
// one built from the table. A topic no stream holds is shown as a preview.
func TestAdminShowsAbsentWhereStreamsWereToldAbsent(t *testing.T) {
	table := routing.NewTable()
	table.Apply("test", routing.Update{Topic: "Other", Route: brokerRoute("b1", "10.0.0.1:10911")})
	c, addr := serveUnrun(t, table)
	d := openDelta(t, addr, "n1")
	d.subscribe(translate.RouteType, "T")
	expect(t, d.next(), translate.RouteType, nil, []string{"T"})

	table.Apply("test", routing.Update{Topic: "T", Route: brokerRoute("b2", "10.0.0.2:10911")}) // not applied
	get := adminOver(t, table, c)
	if _, body := get("/api/v1/routes/T"); strings.TrimSpace(string(body)) != "null" {
		t.Errorf("GET /api/v1/routes/T shows %s; n1 was told T is absent", body)
	}
	var chain TopicChain
	if _, body := get("/api/v1/topics/T"); json.Unmarshal(body, &chain) != nil {
		t.Fatalf("topic: %s", body)
	}
	if string(chain.Route) != "null" || chain.Preview {
		t.Errorf("T's chain shows route %s (preview %v); n1 was told T is absent", chain.Route, chain.Preview)
	}
	if _, body := get("/api/v1/topics/Other"); json.Unmarshal(body, &chain) != nil || !chain.Preview || string(chain.Route) == "null" {
		t.Errorf("a topic no stream holds: preview %v, route %s; want a preview of its route", chain.Preview, chain.Route)
	}
}

// serveUnrun serves a cache over table on a loopback port without Run: the cache applies no change of the table
// but those the test applies, so a test can hold the table ahead of what the streams were sent.
func serveUnrun(t *testing.T, table *routing.Table) (*cache.Cache, string) {
	t.Helper()
	c, err := cache.New(table, cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	sdone := make(chan struct{})
	go func() { serveGRPC(ctx, newGRPC(ctx, c, c, Options{}), lis, time.Second); close(sdone) }()
	t.Cleanup(func() { cancel(); <-sdone })
	return c, lis.Addr().String()
}
