package cache

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"sync/atomic"
	"weak"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/rocketpilot/rocketpilot/routing"
	"github.com/rocketpilot/rocketpilot/xds/wire"
)

// resource is one marshalled resource at one version. It is immutable and shared by every stream.
type resource struct {
	name    string
	version string // 16 hex digits of the SHA-256 of body
	body    []byte // deterministic protobuf encoding
	// delta and sotw are the resource as a member of a delta and of a state-of-the-world response, which package
	// wire marshals and compresses once for every stream a fan-out sends it to. They are held weakly: the responses
	// in flight hold them while a change goes out, and once it has, their encodings (about the size of body again)
	// are garbage rather than kept for the version's whole life; a later send makes them again.
	delta atomic.Pointer[weak.Pointer[discovery.Resource]]
	sotw  atomic.Pointer[weak.Pointer[anypb.Any]]
}

// deltaMember is r as a delta response's member of type typeURL (a resource has one type).
func (r *resource) deltaMember(typeURL string) *discovery.Resource {
	return member(&r.delta, func() *discovery.Resource {
		return wire.ShareDelta(&discovery.Resource{Name: r.name, Version: r.version, Resource: &anypb.Any{TypeUrl: typeURL, Value: r.body}})
	})
}

// sotwMember is r as a state-of-the-world response's member of type typeURL.
func (r *resource) sotwMember(typeURL string) *anypb.Any {
	return member(&r.sotw, func() *anypb.Any { return wire.ShareSotw(&anypb.Any{TypeUrl: typeURL, Value: r.body}) })
}

// member returns the member held in p while something still holds it, else one made now (two made at once: one
// wins, and the other is only used by its caller).
func member[T any](p *atomic.Pointer[weak.Pointer[T]], build func() *T) *T {
	old := p.Load()
	if old != nil {
		if m := old.Value(); m != nil {
			return m
		}
	}
	m := build()
	w := weak.Make(m)
	p.CompareAndSwap(old, &w)
	return m
}

func newResource(name string, m proto.Message) (*resource, error) {
	body, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("marshal %s: %w", name, err)
	}
	return resourceOf(name, body), nil
}

// resourceOf is the resource of an encoding already made deterministically.
func resourceOf(name string, body []byte) *resource {
	sum := sha256.Sum256(body)
	return &resource{name: name, version: hex.EncodeToString(sum[:8]), body: body}
}

// Node metadata fields rocketpilot reads.
const (
	// MetadataTopicsKey lists the topics a node is scoped to: a list of strings, or one comma-separated string.
	MetadataTopicsKey = "ROCKETMQ_TOPICS"
	// MetadataNamespaceKey and MetadataLabelsKey are the namespace and labels of the node's pod (strings, and a
	// struct of strings), as Istio's sidecar bootstrap writes them: TopicBindings select pods by them.
	MetadataNamespaceKey = "NAMESPACE"
	MetadataLabelsKey    = "LABELS"
)

// ProxyOf is a node as bindings see it: its id, and its pod's namespace and labels from its metadata.
func ProxyOf(node *corev3.Node) routing.Proxy {
	f := node.GetMetadata().GetFields()
	p := routing.Proxy{ID: node.GetId(), Namespace: f[MetadataNamespaceKey].GetStringValue()}
	if labels := f[MetadataLabelsKey].GetStructValue().GetFields(); len(labels) > 0 {
		p.Labels = make(map[string]string, len(labels))
		for k, v := range labels {
			p.Labels[k] = v.GetStringValue()
		}
	}
	return p
}

// MetadataScope reads a node's topics from its metadata (MetadataTopicsKey).
func MetadataScope(node *corev3.Node) []string {
	v := node.GetMetadata().GetFields()[MetadataTopicsKey]
	var out []string
	add := func(s string) { // names RocketMQ would refuse as topics are left out
		if s = strings.TrimSpace(s); routing.ValidTopic(s) == nil {
			out = append(out, s)
		}
	}
	switch k := v.GetKind().(type) {
	case *structpb.Value_StringValue:
		for _, s := range strings.Split(k.StringValue, ",") {
			add(s)
		}
	case *structpb.Value_ListValue:
		for _, item := range k.ListValue.GetValues() {
			add(item.GetStringValue())
		}
	}
	return out
}
