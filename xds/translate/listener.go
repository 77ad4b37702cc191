package translate

import (
	"fmt"
	"time"

	rmqv3 "github.com/envoyproxy/go-control-plane/contrib/envoy/extensions/filters/network/rocketmq_proxy/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
)

// DefaultTransientObjectLifeSpan is the RocketMQ filter's transient_object_life_span when none is configured. It
// is Envoy's own default (config.h, TransientObjectLifeSpan), written explicitly as rocketpilot always has.
const DefaultTransientObjectLifeSpan = 30 * time.Second

// The bounds of a configured transient_object_life_span. Envoy purges every Pop ack directive older than it at
// the connection's next heartbeat, so with less than a second an ack fails whenever a heartbeat comes between it
// and its pop; RocketMQ's proxy keeps a popped message invisible for 12 hours at most, and a longer span would
// only keep the directives of abandoned pops in memory.
const (
	MinTransientObjectLifeSpan = time.Second
	MaxTransientObjectLifeSpan = 12 * time.Hour
)

// CheckTransientObjectLifeSpan returns an error unless d is a usable transient_object_life_span: within
// [MinTransientObjectLifeSpan, MaxTransientObjectLifeSpan].
func CheckTransientObjectLifeSpan(d time.Duration) error {
	if d < MinTransientObjectLifeSpan || d > MaxTransientObjectLifeSpan {
		return fmt.Errorf("transient object life span %v: want %v to %v (an ack of Envoy's Pop must arrive within it)",
			d, MinTransientObjectLifeSpan, MaxTransientObjectLifeSpan)
	}
	return nil
}

// ProxyOptions are the filter-wide fields of a node's RocketMQ filter config, the same for every topic in it.
type ProxyOptions struct {
	StatPrefix string
	// TransientObjectLifeSpan is how long Envoy keeps the record of which broker answered a Pop (code 50), which
	// routes its Ack (51) to that broker: DefaultTransientObjectLifeSpan when zero. Callers check a configured
	// value with CheckTransientObjectLifeSpan.
	TransientObjectLifeSpan time.Duration
}

// ProxyConfig is the RocketMQ filter config for a node: one route table holding the routes of every topic the
// node is scoped to, in the order given (callers sort by topic).
func ProxyConfig(opts ProxyOptions, topics []*rmqv3.RouteConfiguration) *rmqv3.RocketmqProxy {
	table := &rmqv3.RouteConfiguration{Name: ExtensionConfigName}
	for _, t := range topics {
		table.Routes = append(table.Routes, t.Routes...)
	}
	span := opts.TransientObjectLifeSpan
	if span == 0 {
		span = DefaultTransientObjectLifeSpan
	}
	return &rmqv3.RocketmqProxy{
		StatPrefix:              opts.StatPrefix,
		RouteConfig:             table,
		TransientObjectLifeSpan: durationpb.New(span),
	}
}

// ExtensionConfig wraps a node's filter config as the ECDS resource the listener's filter subscribes to.
func ExtensionConfig(proxy *rmqv3.RocketmqProxy) (*corev3.TypedExtensionConfig, error) {
	cfg, err := deterministicAny(proxy)
	if err != nil {
		return nil, err
	}
	return &corev3.TypedExtensionConfig{Name: ExtensionConfigName, TypedConfig: cfg}, nil
}

// ExtensionConfigFromRoutes is ExtensionConfig(ProxyConfig(opts, topics)) for topics given as their
// RouteConfigurations' deterministic encodings (as a cache keeps them), already marshalled deterministically. It
// splices the topics' routes fields into the config as they are, without decoding or translating anything: one
// topic's change costs a copy of the scope's bytes, not a translation of every topic in it. The bytes are those
// marshalling the translated messages gives (TestExtensionConfigFromRoutesMatchesTranslation).
func ExtensionConfigFromRoutes(opts ProxyOptions, topics [][]byte) ([]byte, error) {
	routes := make([][]byte, len(topics))
	length := 0
	for i, t := range topics {
		r, err := routesOf(t)
		if err != nil {
			return nil, fmt.Errorf("route configuration %d of %d: %w", i+1, len(topics), err)
		}
		routes[i], length = r, length+len(r)
	}
	mopts := proto.MarshalOptions{Deterministic: true}
	shell, err := mopts.Marshal(ProxyConfig(opts, nil)) // every field but the routes
	if err != nil {
		return nil, err
	}
	proxy := make([]byte, 0, len(shell)+length+8)
	for b := shell; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if num != proxyRouteConfigField {
			proxy = append(proxy, b[:n+m]...)
		} else {
			table, _ := protowire.ConsumeBytes(b[n:]) // the route table: its name alone
			proxy = protowire.AppendTag(proxy, num, protowire.BytesType)
			proxy = protowire.AppendVarint(proxy, uint64(len(table)+length))
			proxy = append(proxy, table...)
			for _, r := range routes {
				proxy = append(proxy, r...)
			}
		}
		b = b[n+m:]
	}
	return mopts.Marshal(&corev3.TypedExtensionConfig{Name: ExtensionConfigName, TypedConfig: &anypb.Any{TypeUrl: ProxyType, Value: proxy}})
}

// Field numbers of rocketmq_proxy.v3 that ExtensionConfigFromRoutes splices: RocketmqProxy.route_config and
// RouteConfiguration.name.
const proxyRouteConfigField, routeConfigNameField = 2, 1

// routesOf returns the fields of an encoded RouteConfiguration but its name: its routes, each field as encoded.
// Deterministic marshalling writes the name first, so they are the rest of the encoding.
func routesOf(topic []byte) ([]byte, error) {
	num, typ, n := protowire.ConsumeTag(topic)
	if n < 0 {
		return nil, protowire.ParseError(n)
	}
	if num != routeConfigNameField {
		return topic, nil // no name
	}
	m := protowire.ConsumeFieldValue(num, typ, topic[n:])
	if m < 0 {
		return nil, protowire.ParseError(m)
	}
	return topic[n+m:], nil
}

// deterministicAny packs m into an Any with deterministic marshalling. anypb.New marshals map fields (metadata
// structs) in Go's random map order, so the packed bytes, and the content-hash version derived from them, would
// differ between two replicas, or two rebuilds, of the same config: every replica switch would look like a change.
func deterministicAny(m proto.Message) (*anypb.Any, error) {
	out := &anypb.Any{}
	if err := anypb.MarshalFrom(out, m, proto.MarshalOptions{Deterministic: true}); err != nil {
		return nil, err
	}
	return out, nil
}

// ListenerOptions shape the RocketMQ listener.
type ListenerOptions struct {
	Address string // listen address (0.0.0.0)
	Port    uint32 // listen port (9876: clients use the sidecar as their NameServer)
	// Inline puts the filter config in the listener instead of ECDS. Every route change then replaces the
	// listener, which drains its connections; ECDS (the default) does not.
	Inline *rmqv3.RocketmqProxy
}

// Listener is the RocketMQ listener. By default its filter's config comes from ECDS over the ADS stream, and
// Envoy subscribes to it by the filter's name, ExtensionConfigName.
func Listener(opts ListenerOptions) (*listenerv3.Listener, error) {
	if opts.Address == "" {
		opts.Address = "0.0.0.0"
	}
	if opts.Port == 0 {
		opts.Port = 9876
	}
	filter := &listenerv3.Filter{Name: ExtensionConfigName}
	if opts.Inline != nil {
		cfg, err := deterministicAny(opts.Inline)
		if err != nil {
			return nil, err
		}
		filter.Name = FilterNamespace
		filter.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: cfg}
	} else {
		filter.ConfigType = &listenerv3.Filter_ConfigDiscovery{ConfigDiscovery: &corev3.ExtensionConfigSource{
			ConfigSource: extensionConfigSource(),
			TypeUrls:     []string{ProxyType},
		}}
	}
	return &listenerv3.Listener{
		Name: ListenerName,
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address:       opts.Address,
			PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: opts.Port},
		}}},
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{filter}}},
	}, nil
}

// extensionConfigSource is where the filter's config comes from: the ADS stream, with no initial fetch timeout.
// Envoy keeps a listener warming until its filter's first ECDS config arrives, but only for the config source's
// initial_fetch_timeout (15 s when unset); then, or when the first config is rejected, the listener goes active
// with no filter config and closes every connection it accepts (network_extension_config_missing). A listener
// that waits for its route table is better than one that refuses every client, and the cache answers a new node's
// ECDS subscription as soon as the clusters it names are accepted (docs/xds.md, "Listener warming").
func extensionConfigSource() *corev3.ConfigSource {
	src := adsSource()
	src.InitialFetchTimeout = durationpb.New(0)
	return src
}
