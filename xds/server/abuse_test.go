package server

// Slow, hostile and rejecting clients: NACK backoff, admission of new streams, subscription and message limits,
// malformed requests and a client that never reads. Each test also checks that the server goes on serving a
// well-behaved stream.

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/prometheus/client_golang/prometheus"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/status"

	"github.com/rocketpilot/rocketpilot/internal/promtest"
	"github.com/rocketpilot/rocketpilot/nameserver/embedded"
	"github.com/rocketpilot/rocketpilot/routing"
	"github.com/rocketpilot/rocketpilot/xds/cache"
	"github.com/rocketpilot/rocketpilot/xds/translate"
)

// applyTopics writes many topics in one change of the table and waits for the cache to apply it.
func applyTopics(t *testing.T, s *stack, names []string, perm int32) {
	t.Helper()
	members := []routing.Member{{Cluster: "TestCluster", BrokerName: "b1", Perm: perm, ReadQueueNums: 4, WriteQueueNums: 4,
		Addrs: []routing.BrokerAddr{{ID: 0, Addr: "10.9.0.1:10911"}}}}
	var updates []routing.Update
	for _, n := range names {
		updates = append(updates, routing.Update{Topic: n, Route: &routing.Route{Members: members}})
	}
	if err := applyAndWait(s, updates...); err != nil {
		t.Fatal(err)
	}
}

func TestNackBacksOffAndCoalesces(t *testing.T) {
	const backoff = 400 * time.Millisecond
	s := startStackWith(t, embedded.LoadDemo, Options{}, cache.Options{NackBackoff: backoff})
	testTopic(s, "conf-a", 6, "b1")
	d := openDelta(t, s.addr, "nacker")
	healthy := openDelta(t, s.addr, "healthy")
	healthy.subscribe(translate.RouteType, "conf-a")
	healthy.ack(healthy.next())
	d.subscribe(translate.RouteType, "conf-a")
	r := d.next()
	changed := s.cache.RejectionsChanged()

	nackedAt := time.Now()
	d.nack(r, "pretend conf-a is invalid")
	select {
	case <-changed:
	case <-time.After(answerWithin):
		t.Fatal("RejectionsChanged did not fire on a NACK")
	}
	rej := s.cache.Rejections()
	if len(rej) != 1 || rej[0].Node != "nacker" || rej[0].TypeURL != translate.RouteType || rej[0].Error != "pretend conf-a is invalid" ||
		strings.Join(rej[0].Topics, ",") != "conf-a" || rej[0].Version == "" {
		t.Fatalf("rejections after the NACK: %+v", rej)
	}
	// Two changes during the backoff: the healthy stream gets both at once; the NACKing one gets one response,
	// after the backoff, with the latest state.
	testTopic(s, "conf-a", 4, "b1")
	healthy.ack(healthy.next())
	testTopic(s, "conf-a", 2, "b1")
	latest := healthy.next()
	healthy.ack(latest)
	r2 := d.next()
	if waited := time.Since(nackedAt); waited < backoff {
		t.Fatalf("the next response came %v after the NACK; the backoff is %v", waited, backoff)
	}
	expect(t, r2, translate.RouteType, []string{"conf-a"}, nil)
	if versionOf(r2, "conf-a") != versionOf(latest, "conf-a") {
		t.Fatalf("after the backoff the NACKing stream got version %s, not the latest %s", versionOf(r2, "conf-a"), versionOf(latest, "conf-a"))
	}
	d.quiet("the changes made during the backoff are coalesced into one response")

	// A second NACK in a row doubles the backoff.
	nackedAt = time.Now()
	d.nack(r2, "still invalid")
	testTopic(s, "conf-a", 6, "b1")
	r3 := d.next()
	if waited := time.Since(nackedAt); waited < 2*backoff {
		t.Fatalf("after a second NACK in a row the next response came in %v; want at least %v", waited, 2*backoff)
	}
	// An ACK clears the rejection.
	changed = s.cache.RejectionsChanged()
	d.ack(r3)
	select {
	case <-changed:
	case <-time.After(answerWithin):
		t.Fatal("RejectionsChanged did not fire on the ACK")
	}
	if rej := s.cache.Rejections(); len(rej) != 0 {
		t.Fatalf("rejections after the ACK: %+v", rej)
	}
	waitFor(t, "SYNCED after the ACK", func() bool { return typeState(t, s, "nacker", translate.RouteType).State == cache.Synced })
}

// openRaw opens a delta ADS stream and sends one request; the returned function waits for the first answer.
func openRaw(ctx context.Context, client discovery.AggregatedDiscoveryServiceClient, req *discovery.DeltaDiscoveryRequest) func() error {
	st, err := client.DeltaAggregatedResources(ctx)
	if err != nil {
		return func() error { return err }
	}
	_ = st.Send(req) // a stream the server refused fails here with io.EOF; Recv returns its status
	return func() error {
		_, err := st.Recv()
		return err
	}
}

func TestAdmissionRateLimitsNewStreams(t *testing.T) {
	const rate, burst, storm = 2.0, 4, 40
	adm := NewAdmission(rate, burst, 0)
	s := startStackWith(t, embedded.LoadDemo, Options{Admission: adm})
	testTopic(s, "conf-a", 6, "b1")
	steady := openDelta(t, s.addr, "steady")
	steady.subscribe(translate.RouteType, "conf-a")
	steady.ack(steady.next())

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := dialADS(t, s.addr)
	start := time.Now()
	errs := make(chan error, storm)
	var wg sync.WaitGroup
	for i := range storm {
		wg.Go(func() {
			errs <- openRaw(ctx, client, &discovery.DeltaDiscoveryRequest{Node: node(fmt.Sprintf("storm-%d", i)),
				TypeUrl: translate.RouteType, ResourceNamesSubscribe: []string{"conf-a"}})()
		})
	}
	// While the storm is refused, the open stream still gets its pushes.
	testTopic(s, "conf-a", 4, "b1")
	expect(t, steady.next(), translate.RouteType, []string{"conf-a"}, nil)
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	admitted, refused := 0, 0
	for err := range errs {
		switch status.Code(err) {
		case codes.OK:
			admitted++
		case codes.ResourceExhausted:
			refused++
		default:
			t.Fatalf("a stream of the storm ended with %v; want an answer or RESOURCE_EXHAUSTED", err)
		}
	}
	// The steady stream took one token; each second brings rate more.
	if most := burst - 1 + int(rate*elapsed.Seconds()) + 1; admitted > most || admitted < 1 {
		t.Fatalf("%d of %d new streams admitted in %v; want 1 to %d", admitted, storm, elapsed, most)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(adm)
	fams := promtest.Families(t, reg)
	counted := map[string]float64{}
	for _, result := range []string{"admitted", "rejected"} {
		counted[result] = promtest.Sum(fams, "rocketpilot_xds_stream_admissions_total", map[string]string{"result": result})
	}
	if int(counted["rejected"]) != refused || int(counted["admitted"]) != admitted+1 {
		t.Fatalf("admission counters %v; %d admitted (and the steady stream), %d refused", counted, admitted, refused)
	}
	t.Logf("%d admitted, %d refused in %v", admitted, refused, elapsed)
}

func TestAdmissionQueuesWithinTheWait(t *testing.T) {
	const rate, streams = 20.0, 10
	s := startStackWith(t, embedded.LoadDemo, Options{Admission: NewAdmission(rate, 1, 5*time.Second)})
	testTopic(s, "conf-a", 6, "b1")
	client := dialADS(t, s.addr)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, streams)
	for i := range streams {
		wg.Go(func() {
			errs <- openRaw(ctx, client, &discovery.DeltaDiscoveryRequest{Node: node(fmt.Sprintf("queued-%d", i)),
				TypeUrl: translate.RouteType, ResourceNamesSubscribe: []string{"conf-a"}})()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("a stream that fits in the admission wait was refused: %v", err)
		}
	}
	// One at once, then one every 1/rate seconds.
	if least := time.Duration(float64(streams-2) / rate * float64(time.Second)); time.Since(start) < least {
		t.Fatalf("%d streams admitted in %v; the rate allows it in no less than %v", streams, time.Since(start), least)
	}
}

func TestSubscriptionLimits(t *testing.T) {
	s := startStackWith(t, embedded.LoadDemo, Options{}, cache.Options{MaxSubscriptions: 10})
	testTopic(s, "conf-a", 6, "b1")
	healthy := openDelta(t, s.addr, "healthy")
	healthy.subscribe(translate.RouteType, "conf-a")
	healthy.ack(healthy.next())
	topics := func(from, n int) []string {
		var out []string
		for i := range n {
			out = append(out, fmt.Sprintf("limit-%d", from+i))
		}
		return out
	}

	// Within the limit across requests, counting unsubscribes.
	ok := openDelta(t, s.addr, "within")
	ok.subscribe(translate.RouteType, topics(0, 6)...)
	ok.ack(ok.next())
	ok.send(&discovery.DeltaDiscoveryRequest{TypeUrl: translate.RouteType, ResourceNamesUnsubscribe: topics(0, 3)})
	ok.subscribe(translate.RouteType, topics(6, 7)...) // 10 at most
	ok.ack(ok.next())

	cases := []struct {
		name string
		reqs [][]string
		code codes.Code
	}{
		{"one request over", [][]string{topics(0, 11)}, codes.ResourceExhausted},
		{"two requests over", [][]string{topics(0, 6), topics(6, 5)}, codes.ResourceExhausted},
		{"a name too long", [][]string{{strings.Repeat("x", cache.MaxNameLength+1)}}, codes.InvalidArgument},
	}
	client := dialADS(t, s.addr)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), answerWithin)
			defer cancel()
			st, err := client.DeltaAggregatedResources(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for i, names := range tc.reqs {
				req := &discovery.DeltaDiscoveryRequest{TypeUrl: translate.RouteType, ResourceNamesSubscribe: names}
				if i == 0 {
					req.Node = node("over")
				}
				if err := st.Send(req); err != nil {
					break // ended already: Recv says why
				}
			}
			for err == nil { // what the stream answered before it was ended, then its status
				_, err = st.Recv()
			}
			if status.Code(err) != tc.code {
				t.Fatalf("the stream ended with %v; want %v", err, tc.code)
			}
		})
	}
	// A state-of-the-world request naming too many.
	sotw, err := dialADS(t, s.addr).StreamAggregatedResources(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := sotw.Send(&discovery.DiscoveryRequest{Node: node("sotw-over"), TypeUrl: translate.RouteType, ResourceNames: topics(0, 11)}); err != nil {
		t.Fatal(err)
	}
	if _, err := sotw.Recv(); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("state-of-the-world request over the limit: %v", err)
	}
	testTopic(s, "conf-a", 4, "b1")
	expect(t, healthy.next(), translate.RouteType, []string{"conf-a"}, nil)
	ok.quiet("a change of a topic the stream within the limit does not use")
}

// rawCodec sends bytes as they are: requests no protobuf decoder accepts.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

var _ encoding.Codec = rawCodec{}

func TestMalformedRequestsGetGRPCErrors(t *testing.T) {
	s := startStackWith(t, embedded.LoadDemo, Options{MaxRecvMsgSize: 1 << 20})
	testTopic(s, "conf-a", 6, "b1")
	healthy := openDelta(t, s.addr, "healthy")
	healthy.subscribe(translate.RouteType, "conf-a")
	healthy.ack(healthy.next())

	conn, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, tc := range []struct {
		name string
		body []byte
	}{
		{"not protobuf", []byte{0xff, 0xff, 0xff, 0xff, 0x0f}},
		{"truncated field", []byte{0x0a, 0x40, 'a'}},
		{"bad UTF-8 in a string", []byte{0x12, 0x02, 0xc3, 0x28}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			desc := &grpc.StreamDesc{StreamName: "DeltaAggregatedResources", ServerStreams: true, ClientStreams: true}
			st, err := conn.NewStream(context.Background(), desc,
				"/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources", grpc.ForceCodec(rawCodec{}))
			if err != nil {
				t.Fatal(err)
			}
			body := tc.body
			if err := st.SendMsg(&body); err != nil {
				t.Fatal(err)
			}
			var out []byte
			if err := st.RecvMsg(&out); status.Code(err) != codes.Internal && status.Code(err) != codes.InvalidArgument {
				t.Fatalf("malformed request answered with %v; want INTERNAL or INVALID_ARGUMENT", err)
			}
		})
	}
	for _, tc := range []struct {
		name string
		req  *discovery.DeltaDiscoveryRequest
		code codes.Code
	}{
		{"no type URL on ADS", &discovery.DeltaDiscoveryRequest{Node: node("no-type")}, codes.InvalidArgument},
		{"larger than the receive limit", &discovery.DeltaDiscoveryRequest{Node: node("huge"), TypeUrl: translate.RouteType,
			ResourceNamesSubscribe: []string{strings.Repeat("y", 2<<20)}}, codes.ResourceExhausted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := openRaw(context.Background(), dialADS(t, s.addr), tc.req)()
			if err == nil || status.Code(err) != tc.code {
				t.Fatalf("got %v; want an error with code %v", err, tc.code)
			}
		})
	}
	// A NACK of a nonce never sent, and an ACK with no nonce, are ignored.
	odd := openDelta(t, s.addr, "odd")
	odd.send(&discovery.DeltaDiscoveryRequest{TypeUrl: translate.RouteType, ResponseNonce: "never-sent",
		ErrorDetail: &rpcstatus.Status{Code: 3, Message: "x"}})
	odd.subscribe(translate.RouteType, "conf-a")
	expect(t, odd.next(), translate.RouteType, []string{"conf-a"}, nil)

	testTopic(s, "conf-a", 4, "b1")
	expect(t, healthy.next(), translate.RouteType, []string{"conf-a"}, nil)
}

func TestNeverReadingClientIsBounded(t *testing.T) {
	s := demoStack(t)
	var topics []string
	for i := range 300 {
		topics = append(topics, fmt.Sprintf("slow-%03d", i))
	}
	applyTopics(t, s, topics, 6)

	// A small, fixed flow-control window (no BDP growth): the client's transport holds at most 64 KiB.
	conn, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	slow, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := slow.Send(&discovery.DeltaDiscoveryRequest{Node: node("never-reads"), TypeUrl: translate.RouteType, ResourceNamesSubscribe: topics}); err != nil {
		t.Fatal(err)
	}
	healthy := openDelta(t, s.addr, "healthy")
	healthy.subscribe(translate.RouteType, topics...)
	first := healthy.next()
	healthy.ack(first)
	responseSize := 0
	for _, r := range first.Resources {
		responseSize += len(r.GetResource().GetValue())
	}

	var before runtime.MemStats
	const warm, changes = 3, 60 // the first changes fill the transport's buffers: measured from after them
	var last *discovery.DeltaDiscoveryResponse
	for i := range warm + changes {
		if i == warm {
			runtime.GC()
			runtime.GC()
			runtime.ReadMemStats(&before)
		}
		applyTopics(t, s, topics, []int32{2, 4, 6}[i%3])
		last = healthy.next()
		healthy.ack(last)
		if len(last.Resources) != len(topics) {
			t.Fatalf("change %d reached the healthy stream with %d of %d routes", i, len(last.Resources), len(topics))
		}
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&after)
	growth := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	queued := int64(changes * responseSize) // what a per-change queue would hold
	t.Logf("%d changes of %d routes (%d KiB each): heap grew %d KiB; a queue would hold %d KiB",
		changes, len(topics), responseSize>>10, growth>>10, queued>>10)
	if growth > queued/4 || growth > 16<<20 {
		t.Fatalf("heap grew %d KiB with a client that never reads; a queue of every change would be %d KiB", growth>>10, queued>>10)
	}
	if st := typeState(t, s, "never-reads", translate.RouteType); st.State == cache.Synced && st.SentVersion == "" {
		t.Fatalf("the never-reading stream: %+v", st)
	}
}

func TestInvalidTopicNamesNeverReachTheModel(t *testing.T) {
	s := demoStack(t)
	bad := []string{"has space", "semi;colon", "slash/topic", strings.Repeat("t", 128), "ünïcode"}
	d := openDelta(t, s.addr, "odd-names", "scoped bad name", "TopicTest")
	d.subscribe(translate.RouteType, append([]string{"TopicTest"}, bad...)...)
	r := d.next()
	expect(t, r, translate.RouteType, []string{"TopicTest"}, sorted(bad))
	for _, name := range append(bad, "scoped bad name") {
		if s.table.Interest().Wanted(name) {
			t.Fatalf("%q reached the model's interest", name)
		}
	}
	if !s.table.Interest().Wanted("TopicTest") {
		t.Fatal("a valid subscribed topic is not wanted")
	}
	if got := cache.MetadataScope(node("n", "ok_1", "bad name", "%RETRY%group-a", "")); strings.Join(got, ",") != "ok_1,%RETRY%group-a" {
		t.Fatalf("scope from metadata: %q", got)
	}
}
