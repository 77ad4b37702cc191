package wire

import (
	"sync"
	"sync/atomic"
	"unsafe"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // the codec this one falls back to
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Codec is grpc's protobuf codec, except for an xDS response that carries one shared resource (a change fanned out
// to the streams subscribed to it): that is written as three buffers, the resource's encoding (the same bytes for
// every stream), the type URL field (the same for every response of the type) and the response's own fields.
// Install it with grpc.ForceServerCodecV2.
//
// A response of several resources is marshalled whole, as grpc does: compressed apart, its resources would lose
// what they share (similar clusters compress to less than half together), and such responses go to one stream
// each rather than to many alike.
type Codec struct{}

var protoCodec = encoding.GetCodecV2("proto")

func (Codec) Name() string { return "proto" }

func (Codec) Unmarshal(data mem.BufferSlice, v any) error { return protoCodec.Unmarshal(data, v) }

func (Codec) Marshal(v any) (mem.BufferSlice, error) {
	switch m := v.(type) {
	case *discovery.DeltaDiscoveryResponse:
		if len(m.Resources) == 1 {
			if seg := deltaSegment(m.Resources[0]); seg != nil {
				return assemble(m, seg, m.TypeUrl, deltaTypeURLField, deltaResourcesField)
			}
		}
	case *discovery.DiscoveryResponse:
		if len(m.Resources) == 1 {
			if seg := sotwSegment(m.Resources[0]); seg != nil {
				return assemble(m, seg, m.TypeUrl, sotwTypeURLField, sotwResourcesField)
			}
		}
	}
	return protoCodec.Marshal(v)
}

// assemble writes response m as its one resource's shared segment, its type URL (a shared segment too, which after
// the resource, whose Any repeats it, compresses to a reference back) and its own fields. Protobuf parsers take
// fields in any order.
func assemble(m proto.Message, resource *segment, typeURL string, typeField, resourcesField protowire.Number) (mem.BufferSlice, error) {
	out := mem.BufferSlice{mem.SliceBuffer(resource.field)}
	skip := []protowire.Number{resourcesField}
	if tu := typeURLSegment(typeField, typeURL); tu != nil {
		out = append(out, mem.SliceBuffer(tu.field))
		skip = append(skip, typeField)
	}
	head, err := proto.Marshal(without(m, skip...))
	if err != nil {
		return nil, err
	}
	return append(out, mem.SliceBuffer(head)), nil
}

// without is a new message of m's type holding m's fields but fields skip (sharing their values: it is only
// marshalled), and its unknown fields, whatever fields the type has.
func without(m proto.Message, skip ...protowire.Number) proto.Message {
	src := m.ProtoReflect()
	own := src.New()
	src.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		for _, n := range skip {
			if fd.Number() == n {
				return true
			}
		}
		own.Set(fd, v)
		return true
	})
	own.SetUnknown(src.GetUnknown())
	return own.Interface()
}

// typeURLs are the type URL fields of the responses sent, shared segments: the longest of a response's own fields,
// the same for every response of a type. Copy on write (read on every response); at most maxTypeURLs are kept
// (rocketpilot serves five types); past that a type URL stays among a response's own fields.
var typeURLs struct {
	mu   sync.Mutex // writers
	segs atomic.Pointer[map[typeURLKey]*segment]
}

type typeURLKey struct {
	field protowire.Number
	url   string
}

const maxTypeURLs = 16

// typeURLSegment is the type URL as field n, a shared segment kept for the process's life; nil for an empty one or
// past maxTypeURLs.
func typeURLSegment(n protowire.Number, url string) *segment {
	if url == "" {
		return nil
	}
	k := typeURLKey{n, url}
	if segs := typeURLs.segs.Load(); segs != nil {
		if seg := (*segs)[k]; seg != nil {
			return seg
		}
	}
	typeURLs.mu.Lock()
	defer typeURLs.mu.Unlock()
	old := map[typeURLKey]*segment{}
	if p := typeURLs.segs.Load(); p != nil {
		old = *p
	}
	if seg := old[k]; seg != nil {
		return seg
	}
	if len(old) >= maxTypeURLs {
		return nil
	}
	field := protowire.AppendString(protowire.AppendTag(nil, n, protowire.BytesType), url)
	seg := &segment{field: field, typeURL: true}
	next := make(map[typeURLKey]*segment, len(old)+1)
	for key, s := range old {
		next[key] = s
	}
	next[k] = seg
	registry.mu.Lock()
	registry.byFirst[unsafe.SliceData(field)] = seg
	registry.mu.Unlock()
	typeURLs.segs.Store(&next)
	return seg
}
