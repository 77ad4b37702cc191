// Package wire encodes xDS responses so that what many streams are sent alike is marshalled and compressed once.
//
// A change of one topic's route reaches every stream subscribed to it: thousands of responses that differ only in
// their nonce. Marshalling and gzip-compressing each of them cost the control plane most of a fan-out's CPU
// (compress/flate's reset and encoding). Here the resource such a response carries is marshalled once, when the
// cache makes it shareable (ShareDelta, ShareSotw), and compressed once, the first time a compressed stream is
// sent it; each response then costs the encoding of its own few fields, a copy and a CRC.
//
// Two pieces cooperate through the bytes gRPC passes between them:
//   - Codec, the server's codec (grpc.ForceServerCodecV2), writes a response of one shared resource as that
//     resource's encoding, its type URL field and then its own fields, each a buffer of its own; the first two are
//     the same bytes for every stream. A protobuf message is its fields in any order, so this parses as the
//     response. Other messages are grpc's protobuf codec's.
//   - the "gzip" compressor registered here in place of grpc's (Installed) writes one gzip member whose deflate
//     stream is a sequence of byte-aligned parts: a shared resource as its deflate blocks, compressed once; the
//     type URL after it compressed against it (a reference back into the resource's Any, made once); anything
//     else compressed as grpc's gzip does, or, when small (a response's own fields), stored. The result is
//     ordinary gzip (RFC 1952, one member): every inflater reads it. grpc's gzip.SetLevel panics once this
//     package is linked (it expects its own compressor under the name).
package wire

import (
	"runtime"

	"google.golang.org/grpc/encoding"
	grpcgzip "google.golang.org/grpc/encoding/gzip"
	"sync"
	"unsafe"
	"weak"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
)

// The fields of the responses a shared resource is a member of.
const (
	deltaResourcesField protowire.Number = 2 // DeltaDiscoveryResponse.resources
	deltaTypeURLField   protowire.Number = 4 // DeltaDiscoveryResponse.type_url
	sotwResourcesField  protowire.Number = 2 // DiscoveryResponse.resources
	sotwTypeURLField    protowire.Number = 4 // DiscoveryResponse.type_url
)

// segment is a shared resource's encoding as a field of its response, and, once a compressed stream needed it,
// its deflate blocks.
type segment struct {
	field []byte // tag, length and the message: the same slice every time (its address identifies it)
	once  sync.Once
	flate []byte // byte-aligned, non-final deflate blocks of field
	// typeURL marks a type URL field's segment (kept for the process's life). A resource's segment keeps the type
	// URL that follows it compressed against it (then): made once, for the one type URL a resource has.
	typeURL  bool
	thenOnce sync.Once
	next     *segment
	after    []byte
}

// registry maps shared messages to their segments, and segments' first bytes back to them. An entry goes when
// its message is collected (runtime.AddCleanup): the cache makes a message per resource version and drops it
// with the version.
var registry struct {
	mu       sync.RWMutex
	delta    map[weak.Pointer[discovery.Resource]]*segment
	sotw     map[weak.Pointer[anypb.Any]]*segment
	byFirst  map[*byte]*segment
	disabled bool
}

func init() {
	registry.delta = map[weak.Pointer[discovery.Resource]]*segment{}
	registry.sotw = map[weak.Pointer[anypb.Any]]*segment{}
	registry.byFirst = map[*byte]*segment{}
}

// ShareDelta marks r, a resource the cache sends alike to many delta streams and never changes, as shared: it is
// marshalled here, once. It returns r.
func ShareDelta(r *discovery.Resource) *discovery.Resource {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
	if err != nil {
		return r // sent as any other: marshalled with its response
	}
	share(registry.delta, r, fieldOf(deltaResourcesField, b))
	return r
}

// ShareSotw marks a, a resource the cache sends alike to many state-of-the-world streams and never changes, as
// shared. It returns a.
func ShareSotw(a *anypb.Any) *anypb.Any {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(a)
	if err != nil {
		return a
	}
	share(registry.sotw, a, fieldOf(sotwResourcesField, b))
	return a
}

func share[T any](m map[weak.Pointer[T]]*segment, p *T, field []byte) {
	key := weak.Make(p)
	seg := &segment{field: field}
	registry.mu.Lock()
	m[key] = seg
	registry.byFirst[unsafe.SliceData(field)] = seg
	registry.mu.Unlock()
	runtime.AddCleanup(p, func(first *byte) {
		registry.mu.Lock()
		delete(m, key)
		delete(registry.byFirst, first)
		registry.mu.Unlock()
	}, unsafe.SliceData(field))
}

// fieldOf encodes message bytes b as field number n (wire type bytes).
func fieldOf(n protowire.Number, b []byte) []byte {
	out := protowire.AppendTag(make([]byte, 0, len(b)+8), n, protowire.BytesType)
	return protowire.AppendBytes(out, b)
}

func deltaSegment(r *discovery.Resource) *segment {
	registry.mu.RLock()
	defer registry.mu.RUnlock()
	if registry.disabled {
		return nil
	}
	return registry.delta[weak.Make(r)]
}

func sotwSegment(a *anypb.Any) *segment {
	registry.mu.RLock()
	defer registry.mu.RUnlock()
	if registry.disabled {
		return nil
	}
	return registry.sotw[weak.Make(a)]
}

// segmentAt is the shared segment whose encoding b is, or nil.
func segmentAt(b []byte) *segment {
	if len(b) == 0 {
		return nil
	}
	registry.mu.RLock()
	seg := registry.byFirst[unsafe.SliceData(b)]
	registry.mu.RUnlock()
	if seg == nil || len(seg.field) != len(b) {
		return nil
	}
	return seg
}

// Installed reports whether the "gzip" compressor grpc finds by name is this package's (a package registering
// its own later would take the name back, and compression would be grpc's again).
func Installed() bool {
	_, ok := encoding.GetCompressor(grpcgzip.Name).(*compressor)
	return ok
}

func enabled() bool {
	registry.mu.RLock()
	defer registry.mu.RUnlock()
	return !registry.disabled
}

// SetEnabled turns sharing on (the default) or off, for benchmarks that compare the two in one run. Off, the codec
// marshals every response whole and grpc's gzip compresses it.
func SetEnabled(on bool) {
	registry.mu.Lock()
	registry.disabled = !on
	registry.mu.Unlock()
}
