package translate

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	rmqv3 "github.com/envoyproxy/go-control-plane/contrib/envoy/extensions/filters/network/rocketmq_proxy/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// TestPackedConfigsMarshalDeterministically: the ECDS config and an inline listener pack the filter config in an
// Any; versions are hashes of the bytes, so two replicas (or two rebuilds) of the same config must produce the same
// bytes, even when a route's metadata_match holds several keys, which protobuf marshals in Go's random map order
// unless asked to be deterministic.
func TestPackedConfigsMarshalDeterministically(t *testing.T) {
	_, topics := model(t)
	var routes []*rmqv3.RouteConfiguration
	for _, tp := range topics {
		routes = append(routes, TopicRoute(tp))
	}
	fields := map[string]*structpb.Value{}
	for i := range 16 {
		fields[fmt.Sprintf("key%02d", i)] = structpb.NewStringValue(fmt.Sprint(i))
	}
	routes[0].Routes[0].Route.MetadataMatch = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
		LBNamespace: {Fields: fields}, "other": {Fields: fields}}}
	build := map[string]func() (proto.Message, error){
		"ECDS config": func() (proto.Message, error) {
			return ExtensionConfig(ProxyConfig(ProxyOptions{StatPrefix: "rocketmq"}, routes))
		},
		"inline listener": func() (proto.Message, error) {
			return Listener(ListenerOptions{Inline: ProxyConfig(ProxyOptions{StatPrefix: "rocketmq"}, routes)})
		},
	}
	for what, f := range build {
		var first []byte
		for replica := range 20 {
			m, err := f()
			if err != nil {
				t.Fatal(err)
			}
			b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			if replica == 0 {
				first = b
			} else if !bytes.Equal(b, first) {
				t.Fatalf("%s: build %d marshals to other bytes than build 0: its version would differ between replicas", what, replica)
			}
		}
	}
}

// TestExtensionConfigFromRoutesMatchesTranslation: the ECDS config spliced from the topics' encoded routes is, byte
// for byte, the translated config marshalled deterministically (so its version too), for scopes of every size the
// model gives, an empty one included, with the default filter-wide fields and with configured ones.
func TestExtensionConfigFromRoutesMatchesTranslation(t *testing.T) {
	_, topics := model(t)
	var all []*rmqv3.RouteConfiguration
	for _, tp := range topics {
		all = append(all, TopicRoute(tp))
	}
	for _, opts := range []ProxyOptions{
		{StatPrefix: "rocketmq"},
		{StatPrefix: "mq", TransientObjectLifeSpan: 90*time.Second + 500*time.Millisecond},
	} {
		for n := range len(all) + 1 {
			routes := all[:n]
			want, err := ExtensionConfig(ProxyConfig(opts, routes))
			if err != nil {
				t.Fatal(err)
			}
			wantBytes, err := proto.MarshalOptions{Deterministic: true}.Marshal(want)
			if err != nil {
				t.Fatal(err)
			}
			var bodies [][]byte
			for _, r := range routes {
				b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
				if err != nil {
					t.Fatal(err)
				}
				bodies = append(bodies, b)
			}
			got, err := ExtensionConfigFromRoutes(opts, bodies)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, wantBytes) {
				t.Fatalf("%+v, %d topics: spliced config differs from the translated one (%d vs %d bytes)", opts, n, len(got), len(wantBytes))
			}
		}
	}
	if _, err := ExtensionConfigFromRoutes(ProxyOptions{StatPrefix: "rocketmq"}, [][]byte{{0xff}}); err == nil {
		t.Fatal("a truncated route configuration was accepted")
	}
}
