package wire

import (
	"fmt"
	"slices"
	"sync"
	"unsafe"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // the codec this one falls back to
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Codec is grpc's protobuf codec, except for xDS responses that carry shared resources: those are written as their
// own fields, then each shared resource's encoding as a buffer of its own (the same bytes for every stream).
// Install it with grpc.ForceServerCodecV2.
type Codec struct{}

var protoCodec = encoding.GetCodecV2("proto")

func (Codec) Name() string { return "proto" }

func (Codec) Unmarshal(data mem.BufferSlice, v any) error { return protoCodec.Unmarshal(data, v) }

func (Codec) Marshal(v any) (mem.BufferSlice, error) {
	switch m := v.(type) {
	case *discovery.DeltaDiscoveryResponse:
		segs := make([]*segment, len(m.Resources))
		shared := false
		for i, r := range m.Resources {
			segs[i] = deltaSegment(r)
			shared = shared || segs[i] != nil
		}
		if !shared {
			break
		}
		return assemble(m, m.TypeUrl, deltaTypeURLField, deltaResourcesField, segs, func(i int) proto.Message { return m.Resources[i] })
	case *discovery.DiscoveryResponse:
		segs := make([]*segment, len(m.Resources))
		shared := false
		for i, a := range m.Resources {
			segs[i] = sotwSegment(a)
			shared = shared || segs[i] != nil
		}
		if !shared {
			break
		}
		return assemble(m, m.TypeUrl, sotwTypeURLField, sotwResourcesField, segs, func(i int) proto.Message { return m.Resources[i] })
	}
	return protoCodec.Marshal(v)
}

// without is a new message of m's type holding m's fields but fields skip (sharing their values: it is only
// marshalled), whatever fields the type has.
func without(m proto.Message, skip ...protowire.Number) proto.Message {
	src := m.ProtoReflect()
	own := src.New()
	src.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if !slices.Contains(skip, fd.Number()) {
			own.Set(fd, v)
		}
		return true
	})
	return own.Interface()
}

// typeURLs are the type URL fields of the responses sent, shared segments too: the longest of a response's own
// fields, the same for every response of a type. At most maxTypeURLs are kept (rocketpilot serves five types).
var typeURLs struct {
	sync.Mutex
	segs map[typeURLKey]*segment
}

type typeURLKey struct {
	field protowire.Number
	url   string
}

const maxTypeURLs = 16

// typeURLSegment is the type URL as field n, a shared segment; nil for an empty one (or past maxTypeURLs: then it
// stays among the response's own fields).
func typeURLSegment(n protowire.Number, url string) *segment {
	if url == "" {
		return nil
	}
	typeURLs.Lock()
	defer typeURLs.Unlock()
	k := typeURLKey{n, url}
	if seg := typeURLs.segs[k]; seg != nil {
		return seg
	}
	if len(typeURLs.segs) >= maxTypeURLs {
		return nil
	}
	if typeURLs.segs == nil {
		typeURLs.segs = map[typeURLKey]*segment{}
	}
	field := protowire.AppendString(protowire.AppendTag(nil, n, protowire.BytesType), url)
	seg := &segment{field: field}
	typeURLs.segs[k] = seg
	registry.mu.Lock()
	registry.byFirst[unsafe.SliceData(field)] = seg // kept for the process's life
	registry.mu.Unlock()
	return seg
}

// assemble writes response m as each resource (its shared segment, or, for one that is not shared, its encoding as
// the field it is), then its type URL (a shared segment: after a shared resource, whose own type URL it repeats,
// it compresses to a reference back), then its own fields.
func assemble(m proto.Message, typeURL string, typeField, resourcesField protowire.Number, segs []*segment,
	resource func(int) proto.Message) (mem.BufferSlice, error) {
	out := make(mem.BufferSlice, 0, len(segs)+2)
	for i, seg := range segs {
		if seg != nil {
			out = append(out, mem.SliceBuffer(seg.field))
			continue
		}
		b, err := proto.Marshal(resource(i))
		if err != nil {
			return nil, fmt.Errorf("resource %d: %w", i, err)
		}
		out = append(out, mem.SliceBuffer(fieldOf(resourcesField, b)))
	}
	own := without(m, resourcesField)
	if tu := typeURLSegment(typeField, typeURL); tu != nil {
		out = append(out, mem.SliceBuffer(tu.field))
		own = without(m, resourcesField, typeField)
	}
	head, err := proto.Marshal(own)
	if err != nil {
		return nil, err
	}
	return append(out, mem.SliceBuffer(head)), nil
}
