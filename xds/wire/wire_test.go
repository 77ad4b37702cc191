package wire

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"runtime"
	"testing"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc/encoding"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/rocketpilot/rocketpilot/internal/fuzzbytes"
	"github.com/rocketpilot/rocketpilot/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

const routeType = "type.googleapis.com/envoy.extensions.filters.network.rocketmq_proxy.v3.RouteConfiguration"

func body(n int) []byte { return bytes.Repeat([]byte(fmt.Sprintf("route-%d;", n)), 40) }

// send is what grpc does with a message on a compressed stream: the codec's buffers, each written to the
// compressor in turn. It returns the codec's bytes and the compressed ones.
func send(t *testing.T, m proto.Message) (plain, compressed []byte) {
	t.Helper()
	bufs, err := Codec{}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	defer bufs.Free()
	var out bytes.Buffer
	z, err := encoding.GetCompressor("gzip").Compress(&out)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bufs {
		plain = append(plain, b.ReadOnlyData()...)
		if _, err := z.Write(b.ReadOnlyData()); err != nil {
			t.Fatal(err)
		}
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	return plain, out.Bytes()
}

// gunzip reads one gzip member with the standard library, refusing a second one.
func gunzip(t *testing.T, b []byte) []byte {
	t.Helper()
	r, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	r.Multistream(false)
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("gunzip: %v", err)
	}
	return out
}

// TestResponsesParseAsSent: responses of one shared resource, delta and state of the world, encode, and compress,
// to bytes that parse as the response given, the resource's part the registry's one slice every time, compressed
// once; a response of several resources is marshalled whole, as grpc does.
func TestResponsesParseAsSent(t *testing.T) {
	shared := ShareDelta(&discovery.Resource{Name: "TopicA", Version: "v1", Resource: &anypb.Any{TypeUrl: routeType, Value: body(1)}})
	delta := &discovery.DeltaDiscoveryResponse{SystemVersionInfo: "42", TypeUrl: routeType, Nonce: "7",
		RemovedResources: []string{"Gone"}, Resources: []*discovery.Resource{shared}}
	sotwShared := ShareSotw(&anypb.Any{TypeUrl: routeType, Value: body(3)})
	sotw := &discovery.DiscoveryResponse{VersionInfo: "9", TypeUrl: routeType, Nonce: "3", Resources: []*anypb.Any{sotwShared}}
	several := &discovery.DeltaDiscoveryResponse{TypeUrl: routeType, Nonce: "8", Resources: []*discovery.Resource{shared,
		{Name: "TopicB", Version: "v2", Resource: &anypb.Any{TypeUrl: routeType, Value: body(2)}}}}
	for _, m := range []proto.Message{delta, sotw, several} {
		plain, compressed := send(t, m)
		got := m.ProtoReflect().New().Interface()
		if err := proto.Unmarshal(plain, got); err != nil || !proto.Equal(got, m) {
			t.Fatalf("the codec's bytes parse as %v (%v), want %v", got, err, m)
		}
		if !bytes.Equal(gunzip(t, compressed), plain) {
			t.Fatalf("the compressed bytes do not inflate to the codec's")
		}
		want, _ := proto.Marshal(m)
		if len(plain) != len(want) {
			t.Errorf("%d bytes, proto.Marshal gives %d", len(plain), len(want))
		}
	}
	a, _ := Codec{}.Marshal(delta)
	b, _ := Codec{}.Marshal(delta)
	if len(a) != 3 || &a[0].ReadOnlyData()[0] != &b[0].ReadOnlyData()[0] || segmentAt(a[0].ReadOnlyData()) == nil {
		t.Fatal("a shared resource's encoding is not the registry's one slice")
	}
	if whole, _ := (Codec{}).Marshal(several); len(whole) != 1 {
		t.Errorf("a response of two resources is %d buffers, want it whole", len(whole))
	}
	seg, tu := segmentAt(a[0].ReadOnlyData()), segmentAt(a[1].ReadOnlyData())
	if tu == nil || !tu.typeURL {
		t.Fatal("the type URL is not a shared segment")
	}
	if first := seg.deflated(); &first[0] != &seg.deflated()[0] {
		t.Error("a shared resource was compressed twice")
	}
	if after := seg.then(tu); &after[0] != &seg.then(tu)[0] || len(after) >= len(tu.deflated()) {
		t.Errorf("the type URL after its resource: %d bytes, on its own %d; want fewer, made once", len(after), len(tu.deflated()))
	}
	runtime.KeepAlive(shared)
	runtime.KeepAlive(sotwShared)
}

// TestInstalled: grpc finds this package's compressor under "gzip".
func TestInstalled(t *testing.T) {
	if !Installed() {
		t.Fatal(`the "gzip" compressor is not this package's`)
	}
}

// TestDisabled: with sharing off, the codec and the compressor are grpc's: the same bytes as proto.Marshal, gzip
// as grpc writes it.
func TestDisabled(t *testing.T) {
	SetEnabled(false)
	defer SetEnabled(true)
	r := ShareDelta(&discovery.Resource{Name: "T", Version: "v", Resource: &anypb.Any{TypeUrl: routeType, Value: body(5)}})
	m := &discovery.DeltaDiscoveryResponse{TypeUrl: routeType, Nonce: "1", Resources: []*discovery.Resource{r}}
	plain, compressed := send(t, m)
	want, _ := proto.Marshal(m)
	if !bytes.Equal(plain, want) || !bytes.Equal(gunzip(t, compressed), want) {
		t.Fatal("disabled: not proto.Marshal's bytes")
	}
}

// TestRegistryForgetsCollected: a shared resource nobody holds leaves the registry.
func TestRegistryForgetsCollected(t *testing.T) {
	count := func() int {
		registry.mu.RLock()
		defer registry.mu.RUnlock()
		return len(registry.delta)
	}
	before := count()
	func() {
		for i := range 100 {
			ShareDelta(&discovery.Resource{Name: fmt.Sprint(i), Resource: &anypb.Any{Value: body(i)}})
		}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for count() > before {
		if time.Now().After(deadline) {
			t.Fatalf("%d shared resources still registered after they were dropped", count()-before)
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}

// FuzzCompressor: whatever the parts a message is written in (shared segments, small and large parts), the
// compressor writes one gzip member that inflates to their concatenation.
func FuzzCompressor(f *testing.F) {
	f.Add([]byte("hello"), []byte{1, 2, 3})
	f.Add(bytes.Repeat([]byte("abc"), 200), []byte{200, 7, 0, 255})
	one := ShareSotw(&anypb.Any{TypeUrl: routeType, Value: body(9)})
	two := ShareSotw(&anypb.Any{TypeUrl: routeType, Value: body(10)})
	f.Fuzz(func(t *testing.T, data, cuts []byte) {
		segs := [][]byte{sotwSegment(one).field, sotwSegment(two).field, typeURLSegment(sotwTypeURLField, routeType).field}
		var want, out bytes.Buffer
		z, _ := encoding.GetCompressor("gzip").Compress(&out)
		c := fuzzbytes.NewChoices(cuts)
		for len(data) > 0 {
			if c.Flip() { // a shared segment: one after another compresses against it
				shared := segs[c.Intn(len(segs))]
				z.Write(shared)
				want.Write(shared)
				continue
			}
			n := min(len(data), 1+c.Intn(70_000))
			z.Write(data[:n])
			want.Write(data[:n])
			data = data[n:]
		}
		if err := z.Close(); err != nil {
			t.Fatal(err)
		}
		if got := gunzip(t, out.Bytes()); !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("inflated %d bytes, wrote %d", len(got), want.Len())
		}
	})
	runtime.KeepAlive(one)
	runtime.KeepAlive(two)
}
