package server

// Tests of the cache faults a protocol review found (issue 14), each named after the fault and each failing on the
// cache before its fix. They drive go-control-plane's real gRPC server; where a fault needs the server at a precise
// point (a response queued while a request is being handled), a hook runs inside the server's stream goroutine.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/prometheus/client_golang/prometheus"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/rocketpilot/rocketpilot/internal/promtest"
	"github.com/rocketpilot/rocketpilot/routing"
	"github.com/rocketpilot/rocketpilot/xds/cache"
	"github.com/rocketpilot/rocketpilot/xds/translate"
)

// removeTopic takes a topic out of the table and waits for the cache to apply it. It panics rather than failing
// the test: hooks call it on the server's goroutine.
func removeTopic(s *stack, name string) {
	if err := applyAndWait(s, routing.Update{Topic: name}); err != nil {
		panic(err)
	}
}

// waitAcked waits until a node's route ACK was handled, so that a hook armed next fires on the next request.
func waitAcked(t *testing.T, s *stack, nodeID string) {
	t.Helper()
	waitFor(t, nodeID+"'s ACK handled", func() bool { return typeState(t, s, nodeID, translate.RouteType).State == cache.Synced })
}

func waitHook(t *testing.T, done <-chan struct{}) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(answerWithin):
		t.Fatal("the server never handled the request the hook waits for")
	}
}

// TestDeltaChangeQueuedDuringARequestIsNotLost (fault 1): a response the cache queues while go-control-plane is
// handling the client's next request reaches the client after the server recorded what the client holds for
// that request's watch. The cache must count what it queued, not go-control-plane's older record, or a later
// change back to a version the client once held is never sent.
func TestDeltaChangeQueuedDuringARequestIsNotLost(t *testing.T) {
	t.Run("deleted then re-created", func(t *testing.T) {
		s, h := startModelStack(t, cache.Options{})
		testTopic(s, "race-a", 6, "b1")
		testTopic(s, "race-b", 6, "b1")
		d := openDelta(t, s.addr, "racer")
		d.subscribe(translate.RouteType, "race-a")
		first := d.next()
		expect(t, first, translate.RouteType, []string{"race-a"}, nil)
		d.ack(first)
		waitAcked(t, s, "racer")
		// While the server handles the next request, race-a goes: its removal is queued to the watch the ACK left,
		// and the new watch is created before the server sends it.
		done := h.beforeNextDeltaRequest(translate.RouteType, func() { removeTopic(s, "race-a") })
		d.subscribe(translate.RouteType, "race-b")
		waitHook(t, done)
		expect(t, d.next(), translate.RouteType, nil, []string{"race-a"})
		r := d.next()
		expect(t, r, translate.RouteType, []string{"race-b"}, nil)
		d.ack(r)
		// race-a comes back with the same content, so the same version: the client does not hold it and must get it.
		testTopic(s, "race-a", 6, "b1")
		r = d.next()
		expect(t, r, translate.RouteType, []string{"race-a"}, nil)
		if versionOf(r, "race-a") != versionOf(first, "race-a") {
			t.Fatalf("race-a came back at version %s, not its first version %s", versionOf(r, "race-a"), versionOf(first, "race-a"))
		}
	})
	t.Run("v1 v2 v1", func(t *testing.T) {
		s, h := startModelStack(t, cache.Options{})
		testTopic(s, "flap", 6, "b1")
		testTopic(s, "other", 6, "b1")
		d := openDelta(t, s.addr, "flapper")
		d.subscribe(translate.RouteType, "flap")
		v1 := d.next()
		d.ack(v1)
		waitAcked(t, s, "flapper")
		// A broker fails over (v2) while the server handles a request, then recovers (v1 again).
		done := h.beforeNextDeltaRequest(translate.RouteType, func() { testTopic(s, "flap", 4, "b1") })
		d.subscribe(translate.RouteType, "other")
		waitHook(t, done)
		v2 := d.next()
		expect(t, v2, translate.RouteType, []string{"flap"}, nil)
		r := d.next()
		expect(t, r, translate.RouteType, []string{"other"}, nil)
		d.ack(r)
		testTopic(s, "flap", 6, "b1")
		r = d.next()
		expect(t, r, translate.RouteType, []string{"flap"}, nil)
		if versionOf(r, "flap") != versionOf(v1, "flap") {
			t.Fatalf("after recovering, flap is at %s; want v1 %s (the client was left on v2 %s)", versionOf(r, "flap"),
				versionOf(v1, "flap"), versionOf(v2, "flap"))
		}
	})
}

// TestUnsubscribeHeldThroughABackoffIsNotForgotten (fault 6): a name unsubscribed under a wildcard goes at once,
// even when the watch carrying the unsubscribe is replaced by a later request before it answers (here during a NACK
// backoff), instead of lingering for the retention like a cluster that merely left the node's view.
func TestUnsubscribeHeldThroughABackoffIsNotForgotten(t *testing.T) {
	const backoff = 300 * time.Millisecond
	s, _ := startModelStack(t, cache.Options{NackBackoff: backoff})
	testTopic(s, "mine", 6, "b1")
	testTopic(s, "elsewhere", 6, "b1", "b2")
	mine, elsewhere := clusterOf(t, s, "mine"), clusterOf(t, s, "elsewhere")
	d := openDelta(t, s.addr, "unsubscriber", "mine")
	d.subscribe(translate.ClusterType, "*", elsewhere)
	r := d.next()
	expect(t, r, translate.ClusterType, sorted([]string{mine, elsewhere}), nil)
	d.nack(r, "pretend a cluster is invalid")
	// Both requests come during the backoff: the second replaces the first's watch before it answers.
	d.send(&discovery.DeltaDiscoveryRequest{TypeUrl: translate.ClusterType, ResourceNamesUnsubscribe: []string{elsewhere}})
	junk := "rmq-none-0000000000000000"
	d.subscribe(translate.ClusterType, junk)
	r = d.next()
	expect(t, r, translate.ClusterType, nil, sorted([]string{elsewhere, junk}))
}

// TestDeltaNackOfAnOlderNonceIsRecorded (fault 5): a client may reject a response after a newer one of the same
// type went out (the newer one answered a subscription change it sent meanwhile). The rejection counts: it is
// recorded, the next response backs off, and the ACK of a response sent before the NACK arrived does not clear it.
func TestDeltaNackOfAnOlderNonceIsRecorded(t *testing.T) {
	const backoff = 400 * time.Millisecond
	s, _ := startModelStack(t, cache.Options{NackBackoff: backoff})
	reg := prometheus.NewRegistry()
	reg.MustRegister(s.cache)
	testTopic(s, "old-a", 6, "b1")
	testTopic(s, "old-b", 6, "b1")
	testTopic(s, "old-c", 6, "b1")
	d := openDelta(t, s.addr, "late-nacker")
	d.subscribe(translate.RouteType, "old-a")
	older := d.next()
	d.subscribe(translate.RouteType, "old-b") // no nonce: a subscription change, not a decision on older
	newer := d.next()
	expect(t, newer, translate.RouteType, []string{"old-b"}, nil)
	nackedAt := time.Now()
	d.nack(older, "old-a is invalid")
	waitFor(t, "the late NACK recorded", func() bool {
		st := typeState(t, s, "late-nacker", translate.RouteType)
		return st.State == cache.Nacked && st.NackError == "old-a is invalid"
	})
	rej := s.cache.Rejections()
	if len(rej) != 1 || strings.Join(rej[0].Topics, ",") != "old-a" {
		t.Fatalf("rejections: %+v; want old-a's", rej)
	}
	if n := promtest.Sum(promtest.Families(t, reg), "rocketpilot_xds_nacks_total", map[string]string{"type": "rocketmq_route"}); n != 1 {
		t.Fatalf("rocketpilot_xds_nacks_total{type=rocketmq_route} = %v, want 1", n)
	}
	d.ack(newer) // sent before the NACK arrived: it says nothing about old-a
	d.subscribe(translate.RouteType, "old-c")
	r := d.next()
	expect(t, r, translate.RouteType, []string{"old-c"}, nil)
	if waited := time.Since(nackedAt); waited < backoff {
		t.Fatalf("the next response came %v after the NACK; the backoff is %v", waited, backoff)
	}
	if st := typeState(t, s, "late-nacker", translate.RouteType); st.State != cache.Nacked {
		t.Fatalf("the ACK of a response sent before the NACK cleared it: %+v", st)
	}
	d.ack(r)
	waitFor(t, "SYNCED once a response sent after the NACK is accepted", func() bool {
		return typeState(t, s, "late-nacker", translate.RouteType).State == cache.Synced
	})
}

// TestPerTypeDeltaStreamWithoutTypeURL (fault 3): on a per-type service (here delta CDS) a request may leave
// type_url out; go-control-plane fills it in only after the request callback. The cache takes the stream's type
// from the stream-open callback, so limits, NACKs and their backoff apply.
func TestPerTypeDeltaStreamWithoutTypeURL(t *testing.T) {
	s, _ := startModelStack(t, cache.Options{MaxSubscriptions: 3})
	testTopic(s, "typeless", 6, "b1")
	cluster := clusterOf(t, s, "typeless")
	conn, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	cds := clusterservice.NewClusterDiscoveryServiceClient(conn)
	open := func() clusterservice.ClusterDiscoveryService_DeltaClustersClient {
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		st, err := cds.DeltaClusters(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}

	t.Run("NACK recorded", func(t *testing.T) {
		st := open()
		if err := st.Send(&discovery.DeltaDiscoveryRequest{Node: node("typeless-nacker"), ResourceNamesSubscribe: []string{cluster}}); err != nil {
			t.Fatal(err)
		}
		r, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		expect(t, r, translate.ClusterType, []string{cluster}, nil)
		if err := st.Send(&discovery.DeltaDiscoveryRequest{ResponseNonce: r.Nonce, ErrorDetail: &rpcstatus.Status{Code: 3, Message: "bad cluster"}}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the NACK recorded against CDS", func() bool {
			st := typeState(t, s, "typeless-nacker", translate.ClusterType)
			return st.State == cache.Nacked && st.NackError == "bad cluster"
		})
		for _, stream := range s.cache.Streams() {
			for _, ts := range stream.Types {
				if ts.TypeURL == "" {
					t.Fatalf("a status recorded under an empty type URL: %+v", stream)
				}
			}
		}
	})
	t.Run("limit applies across requests", func(t *testing.T) {
		st := open()
		if err := st.Send(&discovery.DeltaDiscoveryRequest{Node: node("typeless-greedy"), ResourceNamesSubscribe: []string{"rmq-x-1", "rmq-x-2"}}); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Recv(); err != nil {
			t.Fatal(err)
		}
		// Two more: four in all on a stream limited to three, counted only if both requests count under CDS.
		if err := st.Send(&discovery.DeltaDiscoveryRequest{ResourceNamesSubscribe: []string{"rmq-x-3", "rmq-x-4"}}); err != nil {
			t.Fatal(err)
		}
		for err == nil {
			_, err = st.Recv()
		}
		if status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("four names over two requests on a stream limited to three: the stream ended with %v, want RESOURCE_EXHAUSTED", err)
		}
	})
}

// TestUnknownTypesLeaveTheStreamFlat (fault 4): types rocketpilot does not serve are answered (removed_resources
// for the names asked) without the cache keeping any status for them, and a stream may ask for at most
// cache.MaxUnknownTypes of them: go-control-plane's server keeps a watch per type, so a client making up type URLs
// would otherwise grow the stream's memory without bound.
func TestUnknownTypesLeaveTheStreamFlat(t *testing.T) {
	s, _ := startModelStack(t, cache.Options{})
	testTopic(s, "served", 6, "b1")
	ctx, cancel := context.WithTimeout(context.Background(), answerWithin)
	defer cancel()
	st, err := dialADS(t, s.addr).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&discovery.DeltaDiscoveryRequest{Node: node("inventor"), TypeUrl: translate.RouteType,
		ResourceNamesSubscribe: []string{"served"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err != nil {
		t.Fatal(err)
	}
	answered := 0
	for i := range 1000 {
		typeURL := fmt.Sprintf("type.googleapis.com/made.up.Type%d", i)
		if err = st.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: typeURL, ResourceNamesSubscribe: []string{"x"}}); err != nil {
			break // ended: Recv says why
		}
		var r *discovery.DeltaDiscoveryResponse
		if r, err = st.Recv(); err != nil {
			break
		}
		expect(t, r, typeURL, nil, []string{"x"})
		answered++
		for _, stream := range s.cache.Streams() {
			if len(stream.Types) != 1 || stream.Types[0].TypeURL != translate.RouteType {
				t.Fatalf("after %d made-up types the stream's status holds %d types", i+1, len(stream.Types))
			}
		}
	}
	for err == nil || errors.Is(err, io.EOF) {
		_, err = st.Recv()
	}
	if status.Code(err) != codes.ResourceExhausted || answered != cache.MaxUnknownTypes {
		t.Fatalf("after %d made-up types answered the stream ended with %v; want RESOURCE_EXHAUSTED after %d", answered, err,
			cache.MaxUnknownTypes)
	}
	waitFor(t, "the ended stream leaves nothing behind", s.cache.Idle)

	// State of the world the same: go-control-plane's SotW server keeps a watch (and a select case) per type.
	sotw, err := dialADS(t, s.addr).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	answered = 0
	for i := range 1000 {
		req := &discovery.DiscoveryRequest{TypeUrl: fmt.Sprintf("type.googleapis.com/made.up.Type%d", i), ResourceNames: []string{"x"}}
		if i == 0 {
			req.Node = node("sotw-inventor")
		}
		if err = sotw.Send(req); err != nil {
			break
		}
		if _, err = sotw.Recv(); err != nil {
			break
		}
		answered++
	}
	for err == nil || errors.Is(err, io.EOF) {
		_, err = sotw.Recv()
	}
	if status.Code(err) != codes.ResourceExhausted || answered != cache.MaxUnknownTypes {
		t.Fatalf("state of the world: after %d made-up types answered the stream ended with %v; want RESOURCE_EXHAUSTED after %d",
			answered, err, cache.MaxUnknownTypes)
	}

	// A made-up type URL longer than any name may be is refused outright.
	st, err = dialADS(t, s.addr).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&discovery.DeltaDiscoveryRequest{Node: node("inventor"), TypeUrl: "type.googleapis.com/" + strings.Repeat("x", cache.MaxNameLength),
		ResourceNamesSubscribe: []string{"x"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("a type URL of over %d bytes: %v, want INVALID_ARGUMENT", cache.MaxNameLength, err)
	}
}

// TestSotwRejectedStateNotResentAfterSubscriptionChange (fault 7): a state-of-the-world client that rejected a
// state is not sent that state again because it changed its subscription in a way that does not change the
// answer (a name that does not exist); only a different state goes out.
func TestSotwRejectedStateNotResentAfterSubscriptionChange(t *testing.T) {
	s, _ := startModelStack(t, cache.Options{NackBackoff: 50 * time.Millisecond})
	testTopic(s, "sotw-a", 6, "b1")
	c := openSotw(t, s.addr, node("sotw-rejecter"))
	c.ask(translate.RouteType, "", "", "sotw-a")
	v1 := c.next()
	c.ask(translate.RouteType, v1.VersionInfo, v1.Nonce, "sotw-a")
	testTopic(s, "sotw-a", 4, "b1")
	v2 := c.next()
	if err := c.st.Send(&discovery.DiscoveryRequest{TypeUrl: translate.RouteType, VersionInfo: v1.VersionInfo, ResponseNonce: v2.Nonce,
		ResourceNames: []string{"sotw-a"}, ErrorDetail: &rpcstatus.Status{Code: 3, Message: "v2 is invalid"}}); err != nil {
		t.Fatal(err)
	}
	c.quietFor(2*quietFor, "the rejected state is not sent again")
	c.ask(translate.RouteType, v1.VersionInfo, v2.Nonce, "sotw-a", "sotw-missing")
	c.quietFor(2*quietFor, "a subscription change that leaves the answer as it was rejected")
	testTopic(s, "sotw-a", 2, "b1")
	if v3 := c.next(); v3.VersionInfo == v2.VersionInfo || v3.VersionInfo == v1.VersionInfo {
		t.Fatalf("after a change the client got version %s again", v3.VersionInfo)
	}
}

// TestSotwStaleNonceIsIgnored (fault 9): a state-of-the-world request whose nonce is not the latest sent for its
// type is not answered, even once the latest was acknowledged (go-control-plane's server forgets the nonce after
// an accepted request).
func TestSotwStaleNonceIsIgnored(t *testing.T) {
	s, _ := startModelStack(t, cache.Options{})
	testTopic(s, "stale-a", 6, "b1")
	c := openSotw(t, s.addr, node("sotw-stale"))
	c.ask(translate.RouteType, "", "", "stale-a")
	r1 := c.next()
	c.ask(translate.RouteType, r1.VersionInfo, r1.Nonce, "stale-a")
	testTopic(s, "stale-a", 4, "b1")
	r2 := c.next()
	c.ask(translate.RouteType, r2.VersionInfo, r2.Nonce, "stale-a")
	waitFor(t, "the ACK recorded", func() bool { return typeState(t, s, "sotw-stale", translate.RouteType).State == cache.Synced })
	c.ask(translate.RouteType, r1.VersionInfo, r1.Nonce, "stale-a") // stale: r2 went out after r1
	c.quietFor(2*quietFor, "a request with a stale nonce is ignored")
	testTopic(s, "stale-a", 2, "b1")
	if r3 := c.next(); r3.VersionInfo == r2.VersionInfo {
		t.Fatal("the change after the stale request did not reach the client")
	}
}

func (s *sotwStream) quietFor(d time.Duration, why string) {
	s.t.Helper()
	select {
	case r := <-s.got:
		s.t.Fatalf("unexpected response (%s): type %s version %s, %d resources", why, r.TypeUrl, r.VersionInfo, len(r.Resources))
	case <-time.After(d):
	}
}

// sotwClusters returns the names of the clusters of a state-of-the-world CDS response.
func sotwClusters(t *testing.T, r *discovery.DiscoveryResponse) []string {
	t.Helper()
	var out []string
	for _, res := range r.Resources {
		var c clusterv3.Cluster
		if err := proto.Unmarshal(res.Value, &c); err != nil {
			t.Fatal(err)
		}
		out = append(out, c.Name)
	}
	slices.Sort(out)
	return out
}

// TestRetentionSurvivesReconnects (fault 2): the retention of a cluster that left a node's view runs from the
// moment it left, per node, whatever the streams: a reconnecting client neither loses it early nor keeps it longer.
func TestRetentionSurvivesReconnects(t *testing.T) {
	// The cache's own sweep runs every second: the test sweeps when the retention ends and expects the removal at
	// once, well before the next tick would find a retention measured from the reconnect over.
	const retention, sweptWithin = 2 * time.Second, 400 * time.Millisecond
	// The node's topic moves from a shared broker set to its own; another topic keeps the old set (and its cluster)
	// alive.
	setup := func(t *testing.T) (*stack, string, string) {
		s, _ := startModelStack(t, cache.Options{ClusterRetention: retention})
		testTopic(s, "ret-mine", 6, "b1")
		testTopic(s, "ret-theirs", 6, "b1")
		return s, clusterOf(t, s, "ret-mine"), ""
	}
	move := func(t *testing.T, s *stack) string {
		testTopic(s, "ret-mine", 6, "b1", "b2")
		return clusterOf(t, s, "ret-mine")
	}

	t.Run("delta, same replica: from when it left, not from the reconnect", func(t *testing.T) {
		s, shared, _ := setup(t)
		d := openDelta(t, s.addr, "ret-delta", "ret-mine")
		d.subscribe(translate.ClusterType, "*")
		r := d.next()
		sharedVersion := versionOf(r, shared)
		d.ack(r)
		moved := move(t, s)
		left := time.Now()
		r = d.next()
		expect(t, r, translate.ClusterType, []string{moved}, nil)
		d.ack(r)
		time.Sleep(retention / 2)
		d.close() // the connection broke; the client declares what it holds on a new one
		d2 := openDelta(t, s.addr, "ret-delta", "ret-mine")
		d2.send(&discovery.DeltaDiscoveryRequest{TypeUrl: translate.ClusterType, ResourceNamesSubscribe: []string{"*"},
			InitialResourceVersions: map[string]string{shared: sharedVersion, moved: versionOf(r, moved)}})
		d2.quiet("the client holds what it should: the new cluster, and the old one for the rest of its retention")
		time.Sleep(time.Until(left.Add(retention + 100*time.Millisecond)))
		s.cache.Sweep()
		r = d2.nextWithin(sweptWithin)
		expect(t, r, translate.ClusterType, nil, []string{shared})
	})

	t.Run("delta, fresh replica: a declared cluster it never knew is kept for the retention", func(t *testing.T) {
		s, _ := startModelStack(t, cache.Options{ClusterRetention: retention})
		testTopic(s, "ret-mine", 6, "b1", "b2")
		current := clusterOf(t, s, "ret-mine")
		gone := "rmq-TestCluster-00112233aabbccdd" // the broker set an earlier replica served the node
		d := openDelta(t, s.addr, "ret-fresh", "ret-mine")
		joined := time.Now()
		d.send(&discovery.DeltaDiscoveryRequest{TypeUrl: translate.ClusterType, ResourceNamesSubscribe: []string{"*"},
			InitialResourceVersions: map[string]string{gone: "0011223344556677"}})
		r := d.next()
		expect(t, r, translate.ClusterType, []string{current}, nil)
		d.ack(r)
		d.quiet("the declared cluster stays while the retention runs")
		time.Sleep(time.Until(joined.Add(retention + 100*time.Millisecond)))
		s.cache.Sweep()
		expect(t, d.nextWithin(sweptWithin), translate.ClusterType, nil, []string{gone})
	})

	t.Run("state of the world, same replica: the reconnect keeps what left the view", func(t *testing.T) {
		s, shared, _ := setup(t)
		n := node("ret-sotw", "ret-mine")
		c := openSotw(t, s.addr, n)
		c.ask(translate.ClusterType, "", "")
		r := c.next()
		c.ask(translate.ClusterType, r.VersionInfo, r.Nonce)
		moved := move(t, s)
		left := time.Now()
		r = c.next()
		if got := sotwClusters(t, r); !slices.Equal(got, sorted([]string{shared, moved})) {
			t.Fatalf("after the move: %v; want %s kept beside %s", got, shared, moved)
		}
		c.ask(translate.ClusterType, r.VersionInfo, r.Nonce)
		waitFor(t, "the ACK handled", func() bool { return typeState(t, s, "ret-sotw", translate.ClusterType).State == cache.Synced })
		c.close() // the connection broke: the node has no stream left
		waitFor(t, "the stream closed", func() bool { return len(s.cache.Streams()) == 0 })
		c2 := openSotw(t, s.addr, n) // reconnects holding exactly that state
		c2.ask(translate.ClusterType, r.VersionInfo, "")
		c2.quietFor(quietFor, "the client holds the current state, the kept cluster included")
		time.Sleep(time.Until(left.Add(retention + 100*time.Millisecond)))
		s.cache.Sweep()
		r = c2.nextWithin(sweptWithin)
		if got := sotwClusters(t, r); !slices.Equal(got, []string{moved}) {
			t.Fatalf("after the retention: %v; want %s alone", got, moved)
		}
	})
}
