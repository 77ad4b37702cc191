package main

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/rocketpilot/rocketpilot/xds/cache"
	"github.com/rocketpilot/rocketpilot/xds/translate"
)

// envoyLike opens a delta ADS stream as Envoy does, subscribing to every type, and keeps it open (acknowledging)
// until the test ends.
func envoyLike(t *testing.T, xds, node string) {
	t.Helper()
	conn, err := grpc.NewClient(xds, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); conn.Close() })
	st, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, sub := range []struct {
		typeURL string
		names   []string
	}{
		{translate.ClusterType, []string{"*"}}, {translate.EndpointType, []string{"*"}},
		{translate.ListenerType, []string{translate.ListenerName}}, {translate.ExtensionType, []string{translate.ExtensionConfigName}},
		{translate.RouteType, []string{"TopicTest"}},
	} {
		req := &discovery.DeltaDiscoveryRequest{TypeUrl: sub.typeURL, ResourceNamesSubscribe: sub.names}
		if i == 0 {
			req.Node = &corev3.Node{Id: node}
		}
		if err := st.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	go func() {
		for {
			resp, err := st.Recv()
			if err != nil {
				return
			}
			if st.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: resp.TypeUrl, ResponseNonce: resp.Nonce}) != nil {
				return
			}
		}
	}()
}

func TestProxyConfigTables(t *testing.T) {
	a := startLiveAdmin(t)
	s := served{admin: a.url, xds: a.stack.Addr()}
	hash := a.stack.Table().Topic("TopicTest").BrokerSet.Hash
	cluster := "rmq-DefaultCluster-" + hash

	// A Go sidecar subscribes to routes and endpoints: only those two tables, no empty listener or ECDS section.
	out, errOut, code := ctl(t, s, "proxy-config", "orders-7f9c")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, re := range []string{
		`(?m)^TOPIC\s+CLUSTERS BY CODE\s+VERSION\n`,
		`(?m)^TopicTest\s+` + cluster + `\(10\|310,50,51,not 51\)\s+\S+\n`,
		`(?m)^CLUSTER\s+ADDRESS\s+BROKER\s+ID\s+PERM\s+QUEUES R/W\s+VERSION\n`,
		`(?m)^` + cluster + `\s+127\.0\.0\.1:10911\s+broker-a\s+0\s+RW-\s+4/4\s+\S+\n`,
		`(?m)^` + cluster + `\s+127\.0\.0\.1:10921\s+broker-a\s+1\s+`,
		`(?m)^` + cluster + `\s+127\.0\.0\.1:10931\s+broker-b\s+0\s+RW-\s+4/4\s+`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("proxy-config orders-7f9c lacks %s:\n%s", re, out)
		}
	}
	if strings.Contains(out, "FILTERS") || strings.Contains(out, "SUBSET KEYS") || strings.Contains(out, "No resources") {
		t.Errorf("a Go sidecar's proxy-config shows types it never asked for:\n%s", out)
	}
	// A type it does not subscribe to: said on stderr, nothing printed, exit 0; as data, an empty list.
	out, errOut, code = ctl(t, s, "proxy-config", "orders-7f9c", "listeners")
	if code != 0 || out != "" || errOut != "Node orders-7f9c does not subscribe to listeners (LDS); it subscribes to EDS, ROUTES.\n" {
		t.Errorf("proxy-config orders-7f9c listeners: exit %d %q %q", code, out, errOut)
	}
	if out, _, _ := ctl(t, s, "proxy-config", "orders-7f9c", "listeners", "-o", "json"); out != "[]\n" {
		t.Errorf("proxy-config orders-7f9c listeners -o json: %q", out)
	}
	// -o json of all: the subscribed types' resources, each with its version.
	var dump map[string][]cache.DumpedResource
	out, _, _ = ctl(t, s, "proxy-config", "orders-7f9c", "-o", "json")
	if err := json.Unmarshal([]byte(out), &dump); err != nil {
		t.Fatal(err)
	}
	if len(dump) != 2 || len(dump[translate.RouteType]) != 1 || len(dump[translate.EndpointType]) != 1 || dump[translate.RouteType][0].Version == "" {
		t.Errorf("proxy-config -o json: %s", out)
	}
	if out, _, _ := ctl(t, s, "proxy-config", "orders-7f9c", "routes", "-o", "yaml"); !strings.Contains(out, "- name: TopicTest\n  resource:\n") {
		t.Errorf("proxy-config routes -o yaml:\n%s", out)
	}

	// An Envoy subscribes to every type: five tables.
	envoyLike(t, a.stack.Addr(), "envoy-1")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		out, errOut, code = ctl(t, s, "proxy-config", "envoy-1")
		if code == 0 && strings.Contains(out, "broker-b") && strings.Contains(out, "TopicTest") || time.Now().After(deadline) {
			break
		}
	}
	for _, re := range []string{
		`(?m)^NAME\s+ADDRESS\s+FILTERS\s+VERSION\nrocketmq\s+0\.0\.0\.0:9876\s+rocketmq-proxy \(ECDS\)\s+\S+\n`,
		`(?m)^NAME\s+TYPE\s+TOPICS\s+ROUTES\s+VERSION\nrocketmq-proxy\s+RocketmqProxy\s+\d+\s+\d+\s+\S+\n`,
		`(?m)^TopicTest\s+` + cluster,
		`(?m)^NAME\s+ENDPOINTS\s+LB\s+SUBSET KEYS\s+VERSION\n`,
		`(?m)^` + cluster + `\s+3\s+ROUND_ROBIN\s+broker_name,writable,readable\s+\S+\n`,
		`(?m)^` + cluster + `\s+127\.0\.0\.1:10931\s+broker-b`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("proxy-config envoy-1 lacks %s:\n%s (stderr %q)", re, out, errOut)
		}
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"proxy-config", "nobody"}, `no stream of node "nobody"`},
		{[]string{"proxy-config", "orders-7f9c", "widgets"}, `unknown config kind "widgets"`},
		{[]string{"proxy-config", "orders-7f9c", "-o", "wide"}, `--output "wide"`},
	} {
		if _, errOut, code := ctl(t, s, c.args...); code == 0 || !strings.Contains(errOut, c.want) {
			t.Errorf("rocketctl %q: exit %d %q, want %q", c.args, code, errOut, c.want)
		}
	}
}
