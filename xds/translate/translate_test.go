package translate

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	rmqv3 "github.com/envoyproxy/go-control-plane/contrib/envoy/extensions/filters/network/rocketmq_proxy/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/rocketpilot/rocketpilot/routing"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// model is a small fixed model: TopicTest over two groups (master and slave each, one read-only), and a topic whose
// group lost its master.
func model(t testing.TB) (*routing.Table, []*routing.Topic) {
	tab := routing.NewTable()
	a := routing.Member{Cluster: "DefaultCluster", BrokerName: "broker-a", Zone: "zone-1", Perm: 6, ReadQueueNums: 4, WriteQueueNums: 4,
		Addrs: []routing.BrokerAddr{{ID: 0, Addr: "10.0.0.1:10911"}, {ID: 1, Addr: "10.0.0.2:10911"}}}
	b := routing.Member{Cluster: "DefaultCluster", BrokerName: "broker-b", Zone: "zone-2", Perm: 4, ReadQueueNums: 8, WriteQueueNums: 8,
		Addrs: []routing.BrokerAddr{{ID: 0, Addr: "10.0.1.1:10911"}, {ID: 1, Addr: "10.0.1.2:10911"}}}
	orphan := routing.Member{Cluster: "ClusterB", BrokerName: "broker-c", Perm: 6, ReadQueueNums: 2, WriteQueueNums: 2,
		Addrs: []routing.BrokerAddr{{ID: 1, Addr: "10.0.2.2:10911"}}}
	tab.Apply("ns", routing.Update{Topic: "TopicTest", Route: &routing.Route{Members: []routing.Member{a, b}}},
		routing.Update{Topic: "orphaned", Route: &routing.Route{Members: []routing.Member{orphan}}})
	return tab, []*routing.Topic{tab.Topic("TopicTest"), tab.Topic("orphaned")}
}

func golden(t *testing.T, name string, m proto.Message) {
	t.Helper()
	if v, ok := m.(interface{ ValidateAll() error }); ok {
		if err := v.ValidateAll(); err != nil {
			t.Fatalf("%s fails ValidateAll: %v", name, err)
		}
	}
	got, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	// protojson's output is deliberately unstable in whitespace: compare the JSON trees, not the bytes.
	path := filepath.Join("testdata", name+".json")
	if *update {
		if err := os.WriteFile(path, append(got, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./xds/translate -update)", err)
	}
	var gotTree, wantTree any
	if err := json.Unmarshal(got, &gotTree); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(want, &wantTree); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if !reflect.DeepEqual(gotTree, wantTree) {
		t.Fatalf("%s differs from the golden file; got:\n%s", name, got)
	}
}

func TestGolden(t *testing.T) {
	_, topics := model(t)
	tt := topics[0]
	golden(t, "cluster", Cluster(tt.BrokerSet))
	golden(t, "endpoints", LoadAssignment(tt.BrokerSet))
	golden(t, "route", TopicRoute(tt))
	golden(t, "endpoints-orphaned", LoadAssignment(topics[1].BrokerSet))
	proxy := ProxyConfig(ProxyOptions{StatPrefix: "rocketmq"}, []*rmqv3.RouteConfiguration{TopicRoute(topics[0]), TopicRoute(topics[1])})
	ext, err := ExtensionConfig(proxy)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "ecds", ext)
	l, err := Listener(ListenerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "listener", l)
	inline, err := Listener(ListenerOptions{Port: 10000, Inline: proxy})
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "listener-inline", inline)
}

func TestClusterNames(t *testing.T) {
	_, topics := model(t)
	if got := ClusterName(topics[0].BrokerSet); got != "rmq-DefaultCluster-"+topics[0].BrokerSet.Hash {
		t.Fatalf("cluster name = %q", got)
	}
	set := &routing.BrokerSet{Hash: "0123456789abcdef", Members: []routing.Member{{Cluster: "b c"}, {Cluster: "a/x"}}}
	if got := ClusterName(set); got != "rmq-a_x+b_c-0123456789abcdef" {
		t.Fatalf("multi-cluster name = %q", got)
	}
}

// TestEnvoyRouteQuery checks the 105 answer Envoy would build from the endpoints: one QueueData per host, only the
// carrier of each group with counts and perm, and the client's view with one QueueData per group.
func TestEnvoyRouteQuery(t *testing.T) {
	_, topics := model(t)
	cla := LoadAssignment(topics[0].BrokerSet)
	envoy := EnvoyTopicRoute(cla)
	if len(envoy.QueueDatas) != 4 || len(envoy.BrokerDatas) != 2 {
		t.Fatalf("envoy answer: %d queue datas, %d broker datas", len(envoy.QueueDatas), len(envoy.BrokerDatas))
	}
	nonZero := 0
	for _, q := range envoy.QueueDatas {
		if q.Perm != 0 || q.ReadQueueNums != 0 || q.WriteQueueNums != 0 {
			nonZero++
		}
	}
	if nonZero != 2 {
		t.Fatalf("%d hosts carry queue data, want one per group: %+v", nonZero, envoy.QueueDatas)
	}
	client := ClientTopicRoute(cla)
	if len(client.QueueDatas) != 2 || client.QueueDatas[1].BrokerName != "broker-b" || client.QueueDatas[1].Perm != 4 ||
		client.BrokerDatas[0].BrokerAddrs[1] != "10.0.0.2:10911" || client.BrokerDatas[1].ZoneName != "zone-2" {
		t.Fatalf("client view: %+v", client)
	}
	orphan := ClientTopicRoute(LoadAssignment(topics[1].BrokerSet))
	if len(orphan.QueueDatas) != 1 || orphan.QueueDatas[0].Perm != 6 || orphan.BrokerDatas[0].BrokerAddrs[1] != "10.0.2.2:10911" {
		t.Fatalf("a group without master lost its queues: %+v", orphan)
	}
}
