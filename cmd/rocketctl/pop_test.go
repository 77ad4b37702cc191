package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/rocketpilot/rocketpilot/routing"
	"github.com/rocketpilot/rocketpilot/xds/server"
	"github.com/rocketpilot/rocketpilot/xds/translate"
)

// TestDescribeShowsPopMode: a topic under a pop rule, as the admin API sends its chain, is described with its Pop
// mode groups and invisible time, and its pop route with the invisible time beside the subset.
func TestDescribeShowsPopMode(t *testing.T) {
	set := &routing.BrokerSet{Hash: "0123456789abcdef", Members: []routing.Member{{Cluster: "DefaultCluster", BrokerName: "broker-a",
		Perm: 6, ReadQueueNums: 4, WriteQueueNums: 4, Addrs: []routing.BrokerAddr{{ID: 0, Addr: "10.0.0.1:10911"}}}}}
	topic := &routing.Topic{Name: "TopicTest", BrokerSet: set, Pop: routing.NewPopPolicy([]string{"orders-cg"}, 8*time.Second)}
	route, err := protojson.Marshal(translate.TopicRoute(topic))
	if err != nil {
		t.Fatal(err)
	}
	sent, err := json.Marshal(server.TopicChain{Topic: server.TopicSummary{Name: topic.Name, Cluster: translate.ClusterName(set)},
		Members: set.Members, Route: route, Policy: &server.TopicPolicy{TopicRoute: "default/orders-pop", Pop: topic.Pop}})
	if err != nil {
		t.Fatal(err)
	}
	var chain server.TopicChain // as rocketctl reads it
	if err := json.Unmarshal(sent, &chain); err != nil {
		t.Fatalf("%v: %s", err, sent)
	}
	if !chain.Policy.Pop.Equal(topic.Pop) {
		t.Fatalf("the pop rule read back as %+v from %s", chain.Policy.Pop, sent)
	}
	var out bytes.Buffer
	if err := describeTopic(&out, &chain, time.Now()); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Pop mode:", "orders-cg (invisible time 8s)", "consumer_group=orders-cg", "invisible_time_ms=8000,readable=true"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("describe lacks %q:\n%s", want, out.String())
		}
	}
}
