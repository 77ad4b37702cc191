package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	rmqv3 "github.com/envoyproxy/go-control-plane/contrib/envoy/extensions/filters/network/rocketmq_proxy/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/rocketpilot/rocketpilot/xds/translate"
)

// TestServeDemoOverDeltaADS runs `serve --demo` and, as an on-demand delta client, asks for TopicTest's route, then
// for the cluster and endpoints it names, then for a topic that does not exist.
func TestServeDemoOverDeltaADS(t *testing.T) {
	p := serveInProcess(t, "--demo", "--demo-namesrv-address", "127.0.0.1:0")
	xdsAddr, adminAddr := p.addr(t, "serving xDS", 10*time.Second), p.addr(t, "serving the admin API", time.Second)
	ctx := context.Background()

	conn, err := grpc.NewClient(xdsAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sctx, scancel := context.WithTimeout(ctx, 20*time.Second)
	defer scancel()
	st, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(sctx)
	if err != nil {
		t.Fatal(err)
	}
	ask := func(typeURL string, names ...string) *discovery.DeltaDiscoveryResponse {
		t.Helper()
		if err := st.Send(&discovery.DeltaDiscoveryRequest{Node: &corev3.Node{Id: "demo-client"}, TypeUrl: typeURL,
			ResourceNamesSubscribe: names}); err != nil {
			t.Fatal(err)
		}
		resp, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: typeURL, ResponseNonce: resp.Nonce}); err != nil {
			t.Fatal(err)
		}
		return resp
	}

	r := ask(translate.RouteType, "TopicTest")
	if len(r.Resources) != 1 || r.Resources[0].Name != "TopicTest" {
		t.Fatalf("route response: %v", r)
	}
	var route rmqv3.RouteConfiguration
	if err := proto.Unmarshal(r.Resources[0].Resource.Value, &route); err != nil {
		t.Fatal(err)
	}
	cluster := route.Routes[len(route.Routes)-1].Route.Cluster
	if !strings.HasPrefix(cluster, "rmq-DefaultCluster-") {
		t.Fatalf("TopicTest routes to %q", cluster)
	}
	if c := ask(translate.ClusterType, cluster); len(c.Resources) != 1 || c.Resources[0].Name != cluster {
		t.Fatalf("cluster response: %v", c)
	}
	if e := ask(translate.EndpointType, cluster); len(e.Resources) != 1 || e.Resources[0].Name != cluster {
		t.Fatalf("endpoints response: %v", e)
	}
	if u := ask(translate.RouteType, "no-such-topic"); len(u.Resources) != 0 || len(u.RemovedResources) != 1 || u.RemovedResources[0] != "no-such-topic" {
		t.Fatalf("unknown topic response: %v", u)
	}

	// The admin API shows the stream, and the topic's chain.
	var proxies []struct {
		Node  string `json:"node"`
		Types []struct {
			TypeURL string `json:"typeUrl"`
			State   string `json:"state"`
		} `json:"types"`
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		getJSON(t, "http://"+adminAddr+"/api/v1/proxies", &proxies)
		synced := len(proxies) == 1 && proxies[0].Node == "demo-client" && len(proxies[0].Types) == 3
		for _, ty := range proxies[0].Types {
			synced = synced && ty.State == "SYNCED"
		}
		if synced {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("proxies never SYNCED: %+v", proxies)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var chain struct {
		Topic struct {
			Cluster string   `json:"cluster"`
			Brokers []string `json:"brokers"`
		} `json:"topic"`
		Proxies []struct{ Node string } `json:"proxies"`
	}
	getJSON(t, "http://"+adminAddr+"/api/v1/topics/TopicTest", &chain)
	var dump map[string][]struct {
		Name string `json:"name"`
	}
	getJSON(t, "http://"+adminAddr+"/api/v1/config_dump?node=demo-client", &dump)
	if routes := dump[translate.RouteType]; len(routes) != 1 || routes[0].Name != "TopicTest" || len(dump[translate.ClusterType]) != 1 {
		t.Fatalf("config dump of demo-client: %+v", dump)
	}
	if chain.Topic.Cluster != cluster || len(chain.Topic.Brokers) != 2 || len(chain.Proxies) != 1 {
		t.Fatalf("topic chain: %+v", chain)
	}
}

// getOK GETs url and fails the test unless the answer is 200 OK. The caller closes the body.
func getOK(t *testing.T, url string) *http.Response {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	return resp
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp := getOK(t, url)
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}
