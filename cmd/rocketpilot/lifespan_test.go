package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	rmqv3 "github.com/envoyproxy/go-control-plane/contrib/envoy/extensions/filters/network/rocketmq_proxy/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/rocketpilot/rocketpilot/xds/cache"
	"github.com/rocketpilot/rocketpilot/xds/translate"
)

// TestPopAckDirectiveLivesAsLongAsTheConfiguredLifeSpan: Envoy's RocketMQ filter records, for each message a Pop
// (code 50) returns, the broker that answered (ActiveMessage::fillAckMessageDirective), and routes the message's
// Ack (51) to that broker from the record (ConnectionManager::onAckMessage, which fails the ack with "No ack
// directive is found" when the record is gone). ConnectionManager::purgeDirectiveTable, called on every heartbeat
// (ConnectionManager::onHeartbeat, contrib/rocketmq_proxy/filters/network/source/conn_manager.cc), erases the
// records older than the filter config's transient_object_life_span. So the span a sidecar receives is how late an
// ack may come: serve must put the configured one (--transient-object-life-span, or the flags file) in the filter
// config a node receives, by ECDS and in an inline listener alike.
func TestPopAckDirectiveLivesAsLongAsTheConfiguredLifeSpan(t *testing.T) {
	flagsFile := filepath.Join(t.TempDir(), "flags.yaml")
	if err := os.WriteFile(flagsFile, []byte("transient-object-life-span: 45s\ninline-routes: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want time.Duration
	}{
		{"ECDS, flag", []string{"--transient-object-life-span", "2m30s"}, 150 * time.Second},
		{"inline listener, flags file", []string{"--flags-file", flagsFile}, 45 * time.Second},
		{"ECDS, default", nil, 30 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := serveInProcess(t, append([]string{"--demo", "--demo-namesrv-address", "127.0.0.1:0"}, tc.args...)...)
			proxy := nodeProxyConfig(t, p.addr(t, "serving xDS", 10*time.Second), strings.Contains(tc.name, "inline"))
			if got := proxy.GetTransientObjectLifeSpan().AsDuration(); got != tc.want {
				t.Fatalf("the node's filter config has transient_object_life_span %v, want %v", got, tc.want)
			}
			if len(proxy.GetRouteConfig().GetRoutes()) == 0 {
				t.Fatal("the node's filter config routes nothing: TopicTest's routes are missing")
			}
		})
	}
}

// nodeProxyConfig connects to xdsAddr as a node scoped to TopicTest and returns the RocketMQ filter config it
// receives: from its ECDS config, or from its listener when routes are inline.
func nodeProxyConfig(t *testing.T, xdsAddr string, inline bool) *rmqv3.RocketmqProxy {
	t.Helper()
	st := deltaStream(t, xdsAddr, 20*time.Second)
	md, err := structpb.NewStruct(map[string]any{cache.MetadataTopicsKey: []any{"TopicTest"}})
	if err != nil {
		t.Fatal(err)
	}
	typeURL, name := translate.ExtensionType, translate.ExtensionConfigName
	if inline {
		typeURL, name = translate.ListenerType, translate.ListenerName
	}
	if err := st.Send(&discovery.DeltaDiscoveryRequest{Node: &corev3.Node{Id: "pop-client", Metadata: md},
		TypeUrl: typeURL, ResourceNamesSubscribe: []string{name}}); err != nil {
		t.Fatal(err)
	}
	resp, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if resp.TypeUrl != typeURL || len(resp.Resources) != 1 || resp.Resources[0].Name != name {
		t.Fatalf("asked for %s %s, got %s with %d resources", typeURL, name, resp.TypeUrl, len(resp.Resources))
	}
	proxy := &rmqv3.RocketmqProxy{}
	if !inline {
		var ext corev3.TypedExtensionConfig
		if err := resp.Resources[0].Resource.UnmarshalTo(&ext); err != nil {
			t.Fatal(err)
		}
		if err := ext.TypedConfig.UnmarshalTo(proxy); err != nil {
			t.Fatal(err)
		}
		return proxy
	}
	var l listenerv3.Listener
	if err := resp.Resources[0].Resource.UnmarshalTo(&l); err != nil {
		t.Fatal(err)
	}
	filters := l.GetFilterChains()[0].GetFilters()
	if len(filters) != 1 || filters[0].GetTypedConfig() == nil {
		t.Fatalf("the listener's filters carry no inline config: %v", filters)
	}
	if err := filters[0].GetTypedConfig().UnmarshalTo(proxy); err != nil {
		t.Fatal(err)
	}
	return proxy
}

// TestServeRejectsBadTransientObjectLifeSpan: a span that is not positive, shorter than a second or longer than
// 12 hours stops serve with an error naming the flag, before it serves anything.
func TestServeRejectsBadTransientObjectLifeSpan(t *testing.T) {
	for _, span := range []string{"0", "-30s", "500ms", "13h", "8760h", "soon"} {
		t.Run(span, func(t *testing.T) {
			root := newRootCommand()
			root.SetArgs([]string{"serve", "--demo", "--transient-object-life-span", span, "--demo-namesrv-address", "127.0.0.1:0",
				"--xds-address", "127.0.0.1:0", "--admin-address", ""})
			root.SetErr(&bytes.Buffer{})
			err := root.Execute()
			if err == nil || !strings.Contains(err.Error(), "--transient-object-life-span") {
				t.Fatalf("--transient-object-life-span %s: err = %v", span, err)
			}
		})
	}
}

// deltaStream opens a delta ADS stream to addr, bounded by within; the stream and its connection end with the test.
func deltaStream(t *testing.T, addr string, within time.Duration) discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), within)
	t.Cleanup(func() { cancel(); conn.Close() })
	st, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return st
}
