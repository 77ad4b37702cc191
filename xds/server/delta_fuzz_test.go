package server

// FuzzDeltaProtocol drives real delta ADS streams over loopback gRPC with request sequences decoded from the fuzz
// input — subscribe and unsubscribe (existing and unknown names, "*", duplicates), ACK, NACK, stale nonces,
// reconnects with initial_resource_versions — interleaved with model changes (topics added, removed and moved
// between broker sets, a weighted TopicRoute, a binding that changes a node's scope), and checks the protocol's
// promises (docs/xds.md) after every response, after every step and once the streams are quiet.
//
// A client model keeps what each stream holds, as Envoy does: a response is applied when it arrives and reverted
// when the client NACKs it (the client keeps its last good state); an unsubscribed name is dropped unless a wildcard
// subscription may still cover it. After each step a fence (a subscription to a fresh name of a type the server does
// not serve, answered at once in removed_resources) proves every response the server owed for the step has arrived:
// go-control-plane's delta server sends responses in the order the cache produced them, and the cache answers a
// request synchronously. Model changes wait for the cache to apply them (WaitVersion) before the fence.
//
// The target found three bugs in the cache; regression_test.go keeps each reduced to its shortest form.

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	rmqv3 "github.com/envoyproxy/go-control-plane/contrib/envoy/extensions/filters/network/rocketmq_proxy/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/rocketpilot/rocketpilot/internal/fuzzbytes"
	"github.com/rocketpilot/rocketpilot/routing"
	"github.com/rocketpilot/rocketpilot/xds/cache"
	"github.com/rocketpilot/rocketpilot/xds/translate"
)

const (
	fuzzMaxSteps = 40
	// fenceType is a type rocketpilot does not serve: a subscription to a fresh name of it is answered at once with
	// that name in removed_resources, after every response the cache produced before.
	fenceType = "type.googleapis.com/rocketpilot.fuzz.Fence"
	// fuzzSource is the routing source the fuzz target writes the model as.
	fuzzSource = "fuzz"
)

// FuzzDeltaProtocol takes numbers, not bytes: client A's scope, then one uint64 a step (fuzzStepSize bytes, little
// endian; trailing zero steps are left out). Go minimizes every input that shows new coverage, for up to
// -fuzzminimizetime, and over real gRPC streams coverage differs from run to run with goroutine scheduling: a
// []byte target spends its time minimizing inputs whose coverage does not reproduce. Numbers are not minimized.
func FuzzDeltaProtocol(f *testing.F) {
	for _, seed := range deltaSeeds() {
		scope, a := deltaArgs(seed)
		f.Add(scope,
			a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12], a[13],
			a[14], a[15], a[16], a[17], a[18], a[19], a[20], a[21], a[22], a[23], a[24], a[25], a[26], a[27],
			a[28], a[29], a[30], a[31], a[32], a[33], a[34], a[35], a[36], a[37], a[38], a[39])
	}
	st := startFuzzStack(f)
	f.Fuzz(func(t *testing.T, scope uint16,
		s00, s01, s02, s03, s04, s05, s06, s07, s08, s09, s10, s11, s12, s13,
		s14, s15, s16, s17, s18, s19, s20, s21, s22, s23, s24, s25, s26, s27,
		s28, s29, s30, s31, s32, s33, s34, s35, s36, s37, s38, s39 uint64) {
		st.run(t, deltaInput(scope, []uint64{
			s00, s01, s02, s03, s04, s05, s06, s07, s08, s09, s10, s11, s12, s13,
			s14, s15, s16, s17, s18, s19, s20, s21, s22, s23, s24, s25, s26, s27,
			s28, s29, s30, s31, s32, s33, s34, s35, s36, s37, s38, s39}))
	})
}

// deltaArgs are FuzzDeltaProtocol's arguments for an input (2 bytes of scope, then steps).
func deltaArgs(input []byte) (uint16, [fuzzMaxSteps]uint64) {
	padded := make([]byte, 2+fuzzStepSize*fuzzMaxSteps)
	copy(padded, input)
	var steps [fuzzMaxSteps]uint64
	for i := range steps {
		steps[i] = binary.LittleEndian.Uint64(padded[2+fuzzStepSize*i:])
	}
	return binary.LittleEndian.Uint16(padded), steps
}

// deltaInput is the input FuzzDeltaProtocol's arguments encode.
func deltaInput(scope uint16, steps []uint64) []byte {
	for len(steps) > 0 && steps[len(steps)-1] == 0 {
		steps = steps[:len(steps)-1]
	}
	out := binary.LittleEndian.AppendUint16(nil, scope)
	for _, s := range steps {
		out = binary.LittleEndian.AppendUint64(out, s)
	}
	return out
}

// TestDeltaFuzzSeedsReachInterestingStates keeps the seed corpus honest: together the seeds reach every kind of
// exchange the checks are about.
func TestDeltaFuzzSeedsReachInterestingStates(t *testing.T) {
	st := startFuzzStack(t)
	var total deltaStats
	for i, seed := range deltaSeeds() {
		if len(seed) > 2+fuzzStepSize*fuzzMaxSteps {
			t.Errorf("seed %d has more than %d steps", i, fuzzMaxSteps)
		}
		total.add(st.run(t, seed))
	}
	t.Logf("seed corpus: %+v", total)
	for _, c := range []struct {
		what string
		n    int
	}{
		{"responses", total.responses}, {"unknown names answered in removed_resources", total.unknownAnswered},
		{"NACKed responses reverted", total.nackReverted}, {"declared versions not sent again", total.declaredNotResent},
		{"wildcards dropped", total.wildcardDropped}, {"pushes after model changes", total.pushes},
		{"send clusters", total.sendClusters}, {"clusters kept for the retention", total.kept},
		{"configs pushed after a binding changed", total.rescoped}, {"legacy wildcards", total.legacy},
		{"stale nonces", total.staleNonces}, {"reconnects", total.reconnects}, {"model changes", total.modelChanges},
		{"model changes racing a request", total.raced}, {"NACKs of an older response", total.lateNacks},
	} {
		if c.n == 0 {
			t.Errorf("the seed corpus reaches no %s", c.what)
		}
	}
}

func (s *deltaStats) add(o deltaStats) {
	s.responses += o.responses
	s.unknownAnswered += o.unknownAnswered
	s.nackReverted += o.nackReverted
	s.declaredNotResent += o.declaredNotResent
	s.wildcardDropped += o.wildcardDropped
	s.pushes += o.pushes
	s.sendClusters += o.sendClusters
	s.kept += o.kept
	s.rescoped += o.rescoped
	s.legacy += o.legacy
	s.staleNonces += o.staleNonces
	s.reconnects += o.reconnects
	s.modelChanges += o.modelChanges
	s.raced += o.raced
	s.lateNacks += o.lateNacks
}

// deltaSeeds are hand-written step sequences (encoded by the helpers below) and pseudo-random ones.
func deltaSeeds() [][]byte {
	// Step encoders. Types index fuzzTypes; names index namePool: routes 0 "*", 1–4 t0–t3, 5–6 unknown; clusters 0
	// "*", 1 a name no model has, 2–5 the shapes' clusters, 6… weighted ones; ECDS and listener 0 "*",
	// 1 rocketmq-proxy / rocketmq, 2 another. Topics of model changes are 1–4 (t0–t3), 5–6 unknown.
	const a, b = 0, 1 // clients
	const tRoute, tCDS, tEDS, tECDS, tLDS = 0, 2, 3, 6, 7
	cat := func(parts ...[]byte) []byte { return slices.Concat(parts...) }
	scope := func(i, j byte) []byte { return []byte{i - 1, j - 1} }
	step := func(client, op, typ int, names []int, flags byte) []byte {
		out := []byte{byte(client), byte(op), byte(typ), byte(max(len(names), 1) - 1), 0, 0, 0, flags}
		for i, n := range names {
			out[4+i] = byte(n)
		}
		return out
	}
	sub := func(client, typ int, names ...int) []byte {
		return step(client, stepSubscribe, typ, names, stepFlagNonce)
	}
	unsub := func(client, typ int, names ...int) []byte {
		return step(client, stepUnsubscribe, typ, names, stepFlagNonce)
	}
	ack := func(client, typ int) []byte { return step(client, stepACK, typ, nil, 0) }
	nack := func(client, typ int) []byte { return step(client, stepNACK, typ, nil, 0) }
	reconnect := func(client int) []byte { return step(client, stepReconnect, 0, nil, 0) }
	stale := func(client, typ int, flags byte, names ...int) []byte {
		return step(client, stepStale, typ, names, flags)
	}
	raced := func(client, typ, name, topic, shape int, remove bool) []byte { // a subscription a model change races
		flags := byte(stepFlagNonce | stepFlagRace)
		if remove {
			flags |= stepFlagRaceRemove
		}
		s := step(client, stepSubscribe, typ, []int{name}, flags)
		s[5], s[6] = byte(topic-1), byte(shape)
		return s
	}
	mixed := func(client, typ, subscribe, unsubscribe int) []byte { // one name subscribed, one unsubscribed
		s := step(client, stepMixed, typ, []int{subscribe}, stepFlagNonce)
		s[6] = byte(unsubscribe)
		return s
	}
	shape := func(topic, shape int) []byte {
		return []byte{0, stepModel, changeShape, byte(topic - 1), byte(shape), 0, 0, 0}
	}
	remove := func(topic int) []byte { return []byte{0, stepModel, changeRemove, byte(topic - 1), 0, 0, 0, 0} }
	weighted := func() []byte { return []byte{0, stepModel, changeWeighted, 0, 0, 0, 0, 0} }
	unbind := func() []byte { return []byte{0, stepModel, changeBind, 0, 0, 0, 0, stepFlagUnbind} }
	bind := func(topic, other, to int) []byte { // to client a, b, or 2: both
		return []byte{0, stepModel, changeBind, byte(topic - 1), 0, byte(other - 1), byte(to), 0}
	}
	envoy := func(c int) []byte { // Envoy's order: CDS, EDS, LDS, ECDS, each acknowledged
		return cat(sub(c, tCDS, 0), sub(c, tEDS, 0), sub(c, tLDS, 0), sub(c, tECDS, 1),
			ack(c, tCDS), ack(c, tEDS), ack(c, tLDS), ack(c, tECDS))
	}
	acks := func(c int) []byte {
		return cat(ack(c, tCDS), ack(c, tEDS), ack(c, tLDS), ack(c, tECDS), ack(c, tRoute))
	}
	seeds := [][]byte{
		// Envoy (scope t0, t1) while t0 moves between shapes; t2 keeps t0's old cluster alive elsewhere, so it
		// leaves the node's view and must be kept for the retention; then t0 is weighted, then removed.
		cat(scope(1, 2), shape(1, 0), shape(3, 0), shape(2, 3), envoy(a), shape(1, 1), acks(a), weighted(), acks(a),
			shape(1, 2), acks(a), remove(1), acks(a), reconnect(a), ack(a, tCDS)),
		// A Go sidecar (no scope): routes by name (one unknown, one twice), endpoints by name; NACK; the topic moves.
		cat(scope(5, 6), shape(1, 0), sub(b, tRoute, 1, 5, 1), sub(b, tEDS, 2), nack(b, tRoute), shape(1, 1), ack(b, tRoute),
			sub(b, tEDS, 3), unsub(b, tEDS, 2), reconnect(b), shape(1, 3), acks(b)),
		// Routes by wildcard, then a scope topic is removed: its route must be removed.
		cat(scope(1, 3), shape(1, 0), shape(3, 2), sub(a, tRoute, 0), ack(a, tRoute), remove(1), ack(a, tRoute), remove(3), acks(a)),
		// Wildcard plus an explicit cluster; the explicit one unsubscribed under the wildcard; the wildcard dropped.
		cat(scope(1, 2), shape(1, 0), shape(4, 3), sub(a, tCDS, 0, 5), ack(a, tCDS), unsub(a, tCDS, 5), ack(a, tCDS),
			unsub(a, tCDS, 0), ack(a, tCDS), stale(a, tCDS, stepFlagStaleNames, 0), acks(a)),
		// Bindings re-scope a node without metadata on its open streams.
		cat(scope(5, 6), shape(3, 2), shape(4, 1), sub(b, tCDS, 0), sub(b, tECDS, 1), sub(b, tRoute, 0), acks(b), bind(3, 4, b),
			acks(b), bind(4, 5, 2), acks(b), unbind(), acks(b), bind(3, 2, b), acks(b)),
		// Reconnect with initial_resource_versions after a NACK, and with a change made while away.
		cat(scope(1, 2), shape(1, 0), shape(2, 1), sub(a, tRoute, 1, 2), nack(a, tRoute), sub(a, tCDS, 0), ack(a, tCDS),
			reconnect(a), shape(2, 0), reconnect(a), acks(a)),
		// Legacy wildcards (a type's first request names nothing), unsubscriptions they ignore, then names.
		cat(scope(1, 4), shape(1, 0), ack(a, tCDS), unsub(a, tCDS, 2), ack(a, tEDS), sub(a, tEDS, 3), shape(1, 1),
			ack(a, tRoute), acks(a)),
		// Subscribing and unsubscribing "*" in one request, and stale nonces with and without errors.
		cat(scope(2, 3), shape(2, 1), mixed(a, tCDS, 0, 0), mixed(a, tRoute, 2, 0), stale(a, tRoute, stepFlagStaleNACK|stepFlagStaleNames, 1),
			stale(a, tCDS, 0, 0), acks(a)),
	}
	seeds = append(seeds,
		// A route removed while the server handles a subscription (its removal queued as the new watch is made),
		// then back with the same content: the client must get it again (issue 14, fault 1).
		cat(scope(5, 6), shape(1, 0), sub(b, tRoute, 1), ack(b, tRoute), raced(b, tRoute, 2, 1, 0, true), ack(b, tRoute),
			shape(1, 0), acks(b)),
		// The same with a route that goes v1 -> v2 while the request is handled, then back to v1.
		cat(scope(5, 6), shape(1, 0), sub(b, tRoute, 1), ack(b, tRoute), raced(b, tRoute, 3, 1, 1, false), ack(b, tRoute),
			shape(1, 0), acks(b)),
		// A NACK of an older response after a newer one of the type went out (subscriptions without nonces).
		cat(scope(5, 6), shape(1, 0), shape(2, 1), step(b, stepSubscribe, tRoute, []int{1}, 0), step(b, stepSubscribe, tRoute, []int{2}, 0),
			stale(b, tRoute, stepFlagStaleNACK), ack(b, tRoute), shape(1, 2), acks(b)),
	)
	for i := range 8 {
		seeds = append(seeds, fuzzbytes.Seed(fmt.Sprint("delta", i), 2+fuzzStepSize*fuzzMaxSteps))
	}
	return seeds
}

// The model's vocabulary: topics, names no model ever has, and broker-set shapes topics move between.
var (
	fuzzTopics   = []string{"t0", "t1", "t2", "t3"}
	fuzzUnknown  = []string{"nope0", "nope1"}
	fuzzShapes   [][]routing.Member
	fuzzJunkName = "rmq-none-0000000000000000"
)

func init() {
	m := func(cluster, broker string, perm int32, ip string, slave bool) routing.Member {
		addrs := []routing.BrokerAddr{{ID: 0, Addr: ip + ".1:10911"}}
		if slave {
			addrs = append(addrs, routing.BrokerAddr{ID: 1, Addr: ip + ".2:10911"})
		}
		return routing.Member{Cluster: cluster, BrokerName: broker, Perm: perm, ReadQueueNums: 4, WriteQueueNums: 4, Addrs: addrs}
	}
	fuzzShapes = [][]routing.Member{
		{m("C1", "b1", 6, "10.1.0", true)},
		{m("C1", "b1", 6, "10.1.0", true), m("C1", "b2", 6, "10.1.1", false)},
		{m("C1", "b2", 4, "10.1.1", false)},
		{m("C2", "b3", 6, "10.2.0", true), m("C1", "b1", 6, "10.1.0", true)},
	}
}

// fuzzStack is a control plane without NameServers: the fuzz target writes the table itself.
type fuzzStack struct {
	table *routing.Table
	cache *cache.Cache
	hooks *hooks // a model change racing a request runs in one
	ads   discovery.AggregatedDiscoveryServiceClient

	mu       sync.Mutex
	inputs   int
	everLive map[string]bool // every cluster name the model produced, in any input: names are content hashes and recur
	shapes   []string        // the clusters of fuzzShapes, without and with the weighted TopicRoute
}

func startFuzzStack(tb testing.TB) *fuzzStack {
	tb.Helper()
	// A short NACK backoff: settle waits it out before the streams are compared with the model.
	st, hooks := startModelStack(tb, cache.Options{NackBackoff: 10 * time.Millisecond})
	table, c := st.table, st.cache
	conn, err := grpc.NewClient(st.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	s := &fuzzStack{table: table, cache: c, hooks: hooks, ads: discovery.NewAggregatedDiscoveryServiceClient(conn), everLive: map[string]bool{}}
	// The clusters of every shape, then those of the shapes the weighted TopicRoute weighs (and their send clusters).
	for _, weighted := range []bool{false, true} {
		scratch := routing.NewTable()
		if weighted {
			scratch.SetPolicies([]routing.Policy{fuzzWeighted})
		}
		for _, members := range fuzzShapes {
			scratch.Apply("s", routing.Update{Topic: "t0", Route: &routing.Route{Members: members}})
			for _, name := range translate.ClusterNames(scratch.Topic("t0").BrokerSet) {
				if !slices.Contains(s.shapes, name) {
					s.shapes = append(s.shapes, name)
				}
			}
		}
	}
	return s
}

// deltaRun is one input's run: its clients, the model it wrote, and a transcript for failure messages.
type deltaRun struct {
	t        *testing.T
	s        *fuzzStack
	in       int
	clients  []*fuzzClient
	log      []string
	weighted bool
	bound    []string // the binding's topics, nil without one
	bindTo   int      // 0: client A, 1: client B, 2: both
	// live: every cluster the model has now, with the versions of its cluster and endpoints resources.
	live map[string]map[string]string
	// liveHere: every cluster this input's model had: retained for ten minutes after, so never gone within it.
	liveHere map[string]bool
	stats    deltaStats
	// inModel, inBind: the fences of a model change (a binding change) are running: responses are pushes.
	inModel, inBind bool
}

// deltaStats counts what an input reached, for TestDeltaFuzzSeedsReachInterestingStates.
type deltaStats struct {
	responses, unknownAnswered, nackReverted, declaredNotResent, wildcardDropped, pushes, sendClusters int
	kept, rescoped, legacy, staleNonces, reconnects, modelChanges                                      int
	raced, lateNacks                                                                                   int
}

func (r *deltaRun) logf(format string, args ...any) {
	r.log = append(r.log, fmt.Sprintf(format, args...))
}

func (r *deltaRun) fail(format string, args ...any) {
	r.t.Helper()
	tail := r.log
	if len(tail) > 400 {
		tail = append([]string{"…"}, tail[len(tail)-400:]...)
	}
	r.t.Fatalf("%s\n\n-- transcript --\n%s", fmt.Sprintf(format, args...), strings.Join(tail, "\n"))
}

func (s *fuzzStack) run(t *testing.T, input []byte) deltaStats {
	s.mu.Lock() // inputs share the stack: one at a time
	defer s.mu.Unlock()
	s.inputs++
	r := &deltaRun{t: t, s: s, in: s.inputs}
	s.reset(r)
	c := fuzzbytes.NewChoices(input)
	var meta []string
	for range 2 {
		all := append(slices.Clone(fuzzTopics), fuzzUnknown...)
		meta = append(meta, all[int(c.Next())%len(all)])
	}
	meta = slices.Compact(slices.Sorted(slices.Values(meta)))
	r.clients = []*fuzzClient{
		{r: r, label: "A", node: node(fmt.Sprintf("fuzz-%d-a", r.in), meta...), meta: meta},
		{r: r, label: "B", node: node(fmt.Sprintf("fuzz-%d-b", r.in))},
	}
	r.logf("client A scope %v; client B none", meta)
	defer func() {
		for _, cl := range r.clients {
			cl.close()
		}
	}()
	for step := 0; step < fuzzMaxSteps && c.Left() > 0; step++ {
		r.step(step, c)
	}
	for _, cl := range r.clients {
		if cl.st != nil {
			cl.settle()
			cl.checkQuiet()
		}
	}
	for _, cl := range r.clients {
		cl.close()
	}
	deadline := time.Now().Add(answerWithin)
	for !s.cache.Idle() {
		if time.Now().After(deadline) {
			r.fail("the cache keeps state after every stream closed: %+v", s.cache.Streams())
		}
		time.Sleep(2 * time.Millisecond)
	}
	for _, tp := range append(fuzzTopics, fuzzUnknown...) {
		if s.table.Interest().Wanted(tp) {
			r.fail("topic %s still wanted after every stream closed", tp)
		}
	}
	return r.stats
}

// reset empties the model the previous input left.
func (s *fuzzStack) reset(r *deltaRun) {
	s.table.RemoveSource(fuzzSource)
	s.table.SetPolicies(nil)
	s.table.SetBindings(nil)
	r.sync()
}

// sync waits for the cache to apply the table, then records the live clusters.
func (r *deltaRun) sync() {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), answerWithin)
	defer cancel()
	if err := r.s.cache.WaitVersion(ctx, r.s.table.Version()); err != nil {
		r.fail("the cache did not apply version %d: %v", r.s.table.Version(), err)
	}
	r.live = map[string]map[string]string{translate.ClusterType: {}, translate.EndpointType: {}}
	for _, set := range r.s.table.BrokerSets() {
		add := func(name string, cl, cla proto.Message) {
			r.live[translate.ClusterType][name] = protoContentHash(r, cl)
			r.live[translate.EndpointType][name] = protoContentHash(r, cla)
			r.s.everLive[name] = true
			if r.liveHere == nil {
				r.liveHere = map[string]bool{}
			}
			r.liveHere[name] = true
		}
		add(translate.ClusterName(set), translate.Cluster(set), translate.LoadAssignment(set))
		if translate.Weighted(set) {
			add(translate.SendClusterName(set), translate.SendCluster(set), translate.SendLoadAssignment(set))
		}
	}
}

// protoContentHash is the version docs/xds.md promises: 16 hex digits of the SHA-256 of the deterministic encoding.
func protoContentHash(r *deltaRun, m proto.Message) string {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		r.fail("marshal: %v", err)
	}
	return contentHash(b)
}

func contentHash(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

var fuzzTypes = []string{translate.RouteType, translate.RouteType, translate.ClusterType, translate.EndpointType,
	translate.ClusterType, translate.EndpointType, translate.ExtensionType, translate.ListenerType}

// namePool is what a request of a type may name: a fixed list, so that a step decodes the same in any state.
func (r *deltaRun) namePool(typeURL string) []string {
	switch typeURL {
	case translate.RouteType:
		return append(append([]string{"*"}, fuzzTopics...), fuzzUnknown...)
	case translate.ClusterType, translate.EndpointType:
		return append([]string{"*", fuzzJunkName}, r.s.shapes...)
	case translate.ExtensionType:
		return []string{"*", translate.ExtensionConfigName, "other-config"}
	default:
		return []string{"*", translate.ListenerName, "other-listener"}
	}
}

// A step is fuzzStepSize bytes (one uint64 of FuzzDeltaProtocol), each a decision whatever the state:
//
//	0 client (A even, B odd)   1 operation (stepSubscribe…)   2 type (fuzzTypes), or for a model change its kind
//	3 how many names (1–3), or the topic changed   4–6 indexes into namePool, or a shape, a topic, whom to bind
//	7 flags: 1 the latest nonce (else none), 2 the stale request NACKs, 4 the stale request subscribes,
//	  8 unbind, 16 and 32 how many names the mixed request unsubscribes, 64 a model change races the request
//	  (byte 5's topic moves to byte 6's shape, or with 128 is removed, while the server handles the request:
//	  after it sent what it had queued, before the cache sees the request)
//
// An input is two bytes of client A's scope (indexes into fuzzTopics then fuzzUnknown), then steps.
const fuzzStepSize = 8

const (
	stepSubscribe   = 0 // 0–3
	stepUnsubscribe = 4 // 4–5
	stepACK         = 6 // 6–7
	stepNACK        = 8
	stepStale       = 9
	stepModel       = 10 // 10–12
	stepReconnect   = 13
	stepMixed       = 14 // 14–15

	stepFlagNonce, stepFlagStaleNACK, stepFlagStaleNames, stepFlagUnbind = 1, 2, 4, 8
	stepFlagRace, stepFlagRaceRemove                                     = 64, 128
)

// Model change kinds (byte 2 of an stepModel step).
const (
	changeShape    = 0 // 0–2: byte 3 a topic, byte 4 a shape
	changeRemove   = 3 // byte 3 a topic
	changeWeighted = 4 // toggles a weighted TopicRoute on t0 and t1
	changeBind     = 5 // binds byte 3's topic and byte 5's (fuzzTopics then fuzzUnknown) to byte 6: A, B, both
)

// step decodes and runs one step.
func (r *deltaRun) step(n int, c *fuzzbytes.Choices) {
	var b [fuzzStepSize]byte
	for i := range b {
		b[i] = c.Next()
	}
	cl := r.clients[b[0]%2]
	cl.expect = nil
	for _, ct := range cl.types {
		ct.mentioned, ct.sent = map[string]bool{}, map[string]bool{}
	}
	op := int(b[1] % 16)
	typeURL := fuzzTypes[int(b[2])%len(fuzzTypes)]
	pool := r.namePool(typeURL)
	names := func(count int, from ...byte) []string {
		var out []string
		for _, i := range from[:count] {
			out = append(out, pool[int(i)%len(pool)])
		}
		return out
	}
	some := names(1+int(b[3])%3, b[4], b[5], b[6])
	flags := b[7]
	nonce := ""
	if flags&stepFlagNonce != 0 {
		nonce = cl.typ(typeURL).latestNonce
	}
	var raced func()
	if flags&stepFlagRace != 0 && (op < stepModel || op >= stepMixed) {
		raced = r.raceChange(n, b, typeURL)
		cl.racing = typeURL
	}
	switch {
	case op < stepUnsubscribe:
		r.logf("step %d: %s subscribes %s %v", n, cl.label, shortType(typeURL), some)
		cl.request(typeURL, some, nil, nonce, false, nil)
	case op < stepACK:
		r.logf("step %d: %s unsubscribes %s %v", n, cl.label, shortType(typeURL), some)
		cl.request(typeURL, nil, some, nonce, false, nil)
	case op < stepNACK:
		r.logf("step %d: %s ACKs %s %q", n, cl.label, shortType(typeURL), cl.typ(typeURL).latestNonce)
		cl.request(typeURL, nil, nil, cl.typ(typeURL).latestNonce, false, nil)
	case op == stepNACK:
		r.logf("step %d: %s NACKs %s %q", n, cl.label, shortType(typeURL), cl.typ(typeURL).latestNonce)
		cl.request(typeURL, nil, nil, cl.typ(typeURL).latestNonce, true, nil)
	case op == stepStale:
		stale := "stale"
		if len(cl.nonces) > 0 && cl.nonces[0] != cl.typ(typeURL).latestNonce {
			stale = cl.nonces[0] // the stream's first nonce, of some type
		}
		var sub []string
		if flags&stepFlagStaleNames != 0 {
			sub = some
		}
		nack := flags&stepFlagStaleNACK != 0
		r.stats.staleNonces++
		r.logf("step %d: %s sends %s with stale nonce %q (error %v), subscribing %v", n, cl.label, shortType(typeURL), stale, nack, sub)
		cl.request(typeURL, sub, nil, stale, nack, nil)
	case op < stepReconnect:
		r.change(n, b)
		r.stats.modelChanges++
		r.inModel, r.inBind = true, int(b[2])%6 == changeBind
		for _, o := range r.clients {
			if o.st != nil {
				o.fence()
			}
		}
		r.inModel, r.inBind = false, false
		return
	case op == stepReconnect:
		r.stats.reconnects++
		r.logf("step %d: %s reconnects", n, cl.label)
		cl.reconnect()
	default:
		unsub := names(1+int(flags>>4)%3, b[6], b[5], b[4])
		r.logf("step %d: %s subscribes %v and unsubscribes %v of %s in one request", n, cl.label, some, unsub, shortType(typeURL))
		cl.request(typeURL, some, unsub, nonce, false, nil)
	}
	if raced != nil {
		raced()
		r.inModel = true
		for _, o := range r.clients {
			if o != cl && o.st != nil {
				o.fence()
			}
		}
		r.inModel = false
	}
	cl.fence()
	cl.racing = ""
	for _, ct := range cl.types {
		ct.unseen = false // the fence proves the server has seen every request
	}
	cl.checkStep()
}

// raceChange arms a model change to run while the server handles the next request of typeURL: inside
// go-control-plane's stream goroutine, after it sent what was queued and before the cache sees the request, so the
// change's push is queued while the request's watch is made. The model counts the change as made before the
// request, as the server applies it. The returned function waits for it.
func (r *deltaRun) raceChange(n int, b [fuzzStepSize]byte, typeURL string) func() {
	topic := fuzzTopics[int(b[5])%len(fuzzTopics)]
	u, what := routing.Update{Topic: topic}, "removed"
	if b[7]&stepFlagRaceRemove == 0 {
		shape := int(b[6]) % len(fuzzShapes)
		u.Route, what = &routing.Route{Members: fuzzShapes[shape]}, fmt.Sprintf("on shape %d", shape)
	}
	r.logf("step %d: model: %s %s, racing the request that follows", n, topic, what)
	before := r.scopes()
	var err error // the hook runs on the server's goroutine: it reports, the test goroutine fails
	done := r.s.hooks.beforeNextDeltaRequest(typeURL, func() {
		v := r.s.table.Apply(fuzzSource, u)
		ctx, cancel := context.WithTimeout(context.Background(), answerWithin)
		defer cancel()
		err = r.s.cache.WaitVersion(ctx, v)
	})
	r.noteChanged(before)
	return func() {
		select {
		case <-done:
		case <-time.After(answerWithin):
			r.fail("the server never handled the request a model change was to race")
		}
		if err != nil {
			r.fail("the cache did not apply the racing change: %v", err)
		}
		r.sync()
		r.stats.modelChanges++
		r.stats.raced++
	}
}

// scopes returns each client's scope.
func (r *deltaRun) scopes() [][]string {
	out := make([][]string, len(r.clients))
	for i, cl := range r.clients {
		out[i] = cl.scope()
	}
	return out
}

// noteChanged is the model's bookkeeping of a model change: what the clients' scopes were, and which types have
// no watch to push to (their view may lag until they ask again).
func (r *deltaRun) noteChanged(before [][]string) {
	for i, cl := range r.clients {
		for _, ct := range cl.types {
			ct.scopeBefore = before[i]
			if !ct.activeWatch {
				ct.current = false
			}
		}
	}
}

// change is a model change: a topic set to a shape or removed, the weighted policy or the binding toggled.
func (r *deltaRun) change(n int, b [fuzzStepSize]byte) {
	before := r.scopes()
	topic := fuzzTopics[int(b[3])%len(fuzzTopics)]
	switch kind := int(b[2]) % 6; {
	case kind < changeRemove:
		shape := int(b[4]) % len(fuzzShapes)
		r.logf("step %d: model: %s on shape %d", n, topic, shape)
		r.s.table.Apply(fuzzSource, routing.Update{Topic: topic, Route: &routing.Route{Members: fuzzShapes[shape]}})
	case kind == changeRemove:
		r.logf("step %d: model: %s removed", n, topic)
		r.s.table.Apply(fuzzSource, routing.Update{Topic: topic})
	case kind == changeWeighted:
		r.weighted = !r.weighted
		r.logf("step %d: model: weighted TopicRoute on t0, t1: %v", n, r.weighted)
		var ps []routing.Policy
		if r.weighted {
			ps = []routing.Policy{fuzzWeighted}
		}
		r.s.table.SetPolicies(ps)
	default:
		if b[7]&stepFlagUnbind != 0 {
			r.bound = nil
		} else {
			all := append(slices.Clone(fuzzTopics), fuzzUnknown...)
			r.bound, r.bindTo = []string{topic, all[int(b[5])%len(all)]}, int(b[6])%3
		}
		r.logf("step %d: model: binding of %v to client %d", n, r.bound, r.bindTo)
		var bs []routing.Binding
		if r.bound != nil {
			ids := map[string]bool{}
			for i, cl := range r.clients {
				if r.bindTo == 2 || r.bindTo == i {
					ids[cl.node.Id] = true
				}
			}
			bs = []routing.Binding{{Name: "fuzz/bound", Topics: r.bound, Selects: func(p routing.Proxy) bool { return ids[p.ID] }}}
		}
		r.s.table.SetBindings(bs)
	}
	r.noteChanged(before)
	r.sync()
}

// fuzzWeighted is the weighted TopicRoute the model toggles: sends split 70/30 between b1 and b2.
var fuzzWeighted = routing.Policy{Name: "fuzz/weighted", Match: routing.TopicMatch{Exact: []string{"t0", "t1"}},
	Send: []routing.Backend{{BrokerNames: []string{"b1"}, Weight: 70, Weighted: true}, {BrokerNames: []string{"b2"}, Weight: 30, Weighted: true}}}

func shortType(typeURL string) string { return typeURL[strings.LastIndex(typeURL, ".")+1:] }

// fuzzClient is one client node and its current stream.
type fuzzClient struct {
	r      *deltaRun
	label  string
	node   *corev3.Node
	meta   []string // ROCKETMQ_TOPICS
	st     discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
	cancel context.CancelFunc
	recv   chan *discovery.DeltaDiscoveryResponse
	done   chan struct{}
	sent   bool // the node went out on this stream
	fences int
	nonces []string
	types  map[string]*clientTypeState
	sysVer uint64
	dump   map[string]map[string]string // ConfigDump of the node since the last fence
	// expect: the names a request of this step subscribed, which its response must mention (declared: the
	// version it declared in initial_resource_versions).
	expect []subscribeExpectation
	// racing is the type of the request a model change races in this step.
	racing string
}

type subscribeExpectation struct {
	typeURL, name, declared string
}

type heldRes struct {
	version string
	body    []byte
}

type fuzzSent struct {
	nonce string
	seq   int
}

// decide mirrors the server's reading of a request's nonce: the response it decides on, if that one is still
// undecided or the one decided last; earlier ones are forgotten.
func (ct *clientTypeState) decide(nonce string) (fuzzSent, bool) {
	if nonce == "" {
		return fuzzSent{}, false
	}
	i := slices.IndexFunc(ct.inflight, func(e fuzzSent) bool { return e.nonce == nonce })
	if i < 0 {
		return fuzzSent{}, false
	}
	ct.inflight = ct.inflight[i:]
	return ct.inflight[0], true
}

type undoEntry struct {
	prev    *heldRes // nil: absent before
	version string   // what the response set ("" removed)
}

// clientTypeState is what one client knows of one type: its subscription (as the server computes it from the
// requests), what it holds, and its exchange on the current stream.
type clientTypeState struct {
	requested bool // a request of the type went out on this stream
	// unseen: the type's first request on the stream may not have reached the server when it answered another
	// type (a config computed before it, a model change racing it): make-before-break cannot count the
	// subscription until an answer of the type, or a fence, shows the server has seen it.
	unseen   bool
	legacy   bool // the stream's first request of the type named nothing: a legacy wildcard, until it names some
	wildcard bool
	explicit map[string]bool
	held     map[string]heldRes
	rejected map[string]string // name → the version the client rejected ("" a removal), until a response names it again

	latestNonce string
	undo        map[string]undoEntry // the latest response, while the client may still reject it
	nackHold    bool                 // the client NACKed a response: the server may hold the next one back
	// The server's view of the client's decisions (xds/cache callbacks.go): the responses received and not yet
	// decided on (the one decided last first, at most 16), a count of the responses received, and the rejection that
	// stands until a response received after it is accepted.
	inflight    []fuzzSent
	seq         int
	nackNonce   string
	nackSeq     int
	activeWatch bool // a request went out after the latest response: the server holds a watch
	current     bool // no model change since the client's view was last brought up to date
	// Since the last fence:
	recentUnsub    map[string]bool // names unsubscribed: a response computed before may still name them
	recentWildcard bool
	scopeBefore    []string
	letGo          map[string]bool // names the client let go (unsubscribed, or held only by the wildcard it dropped)
	mentioned      map[string]bool
	sent           map[string]bool // names sent since the step's request (mentioned: sent or removed)
	resendOK       map[string]bool // rejected names the client asked for again (subscribed, or declared on a new stream)
	// dropped: names the client let go (unsubscribed, or held only by a wildcard it dropped) and has not been sent
	// again since; no make-before-break promise holds for them.
	dropped map[string]bool
}

func (cl *fuzzClient) typ(typeURL string) *clientTypeState {
	if cl.types == nil {
		cl.types = map[string]*clientTypeState{}
	}
	ct := cl.types[typeURL]
	if ct == nil {
		ct = &clientTypeState{explicit: map[string]bool{}, held: map[string]heldRes{}, rejected: map[string]string{},
			recentUnsub: map[string]bool{}, letGo: map[string]bool{}, mentioned: map[string]bool{}, sent: map[string]bool{},
			resendOK: map[string]bool{}, dropped: map[string]bool{}, current: true}
		cl.types[typeURL] = ct
	}
	return ct
}

// scope is the node's topics: its metadata's and its binding's.
func (cl *fuzzClient) scope() []string {
	out := slices.Clone(cl.meta)
	r := cl.r
	if r.bound != nil && (r.bindTo == 2 || r.clients[r.bindTo] == cl) {
		out = append(out, r.bound...)
	}
	return slices.Compact(slices.Sorted(slices.Values(out)))
}

func (cl *fuzzClient) open() {
	r := cl.r
	ctx, cancel := context.WithCancel(context.Background())
	st, err := r.s.ads.DeltaAggregatedResources(ctx)
	if err != nil {
		cancel()
		r.fail("open a delta stream: %v", err)
	}
	cl.st, cl.cancel, cl.sent = st, cancel, false
	cl.recv, cl.done = make(chan *discovery.DeltaDiscoveryResponse, 64), make(chan struct{})
	recv, done := cl.recv, cl.done
	go func() {
		defer close(done)
		for {
			resp, err := st.Recv()
			if err != nil {
				return
			}
			select {
			case recv <- resp:
			case <-ctx.Done():
				return
			}
		}
	}()
	for _, ct := range cl.types {
		ct.requested, ct.legacy, ct.latestNonce, ct.undo, ct.nackHold, ct.activeWatch = false, false, "", nil, false, false
		ct.inflight, ct.seq, ct.nackNonce, ct.nackSeq = nil, 0, "", 0
		// A new stream knows nothing of rejections: it sends what differs from what the client declares.
		ct.rejected, ct.resendOK = map[string]string{}, map[string]bool{}
	}
	cl.sysVer = 0
}

func (cl *fuzzClient) close() {
	if cl.st == nil {
		return
	}
	cl.cancel()
	<-cl.done
	cl.st = nil
}

func (cl *fuzzClient) sendRaw(req *discovery.DeltaDiscoveryRequest) {
	r := cl.r
	r.t.Helper()
	if cl.st == nil {
		cl.open()
	}
	if !cl.sent {
		req.Node, cl.sent = cl.node, true
	}
	if err := cl.st.Send(req); err != nil {
		r.fail("client %s: send: %v", cl.label, err)
	}
}

// request sends a request of a type and follows it in the model as go-control-plane's subscription state does
// (subscriptions first, then unsubscriptions, in order; a legacy wildcard ignores requests that name nothing).
func (cl *fuzzClient) request(typeURL string, sub, unsub []string, nonce string, nack bool, initial map[string]string) {
	r := cl.r
	r.t.Helper()
	if cl.st == nil {
		cl.open()
	}
	req := &discovery.DeltaDiscoveryRequest{TypeUrl: typeURL, ResourceNamesSubscribe: sub, ResourceNamesUnsubscribe: unsub,
		ResponseNonce: nonce, InitialResourceVersions: initial}
	if nack {
		req.ErrorDetail = &status.Status{Code: 3, Message: "rejected by the fuzz client"}
	}
	ct := cl.typ(typeURL)
	wasWildcard := ct.wildcard
	// The client's decision on a response: a NACK of the latest reverts it (an older one the client cannot take
	// back, having applied later ones over it, but the server still backs off), any other request naming it
	// accepts it. Only the acceptance of a response received after the standing rejection (or of the one rejected:
	// the client takes its NACK back) lifts it.
	if e, decided := ct.decide(nonce); decided && nack {
		if nonce == ct.latestNonce {
			if len(ct.undo) > 0 {
				cl.r.stats.nackReverted++
			}
			for name, u := range ct.undo {
				if u.prev == nil {
					delete(ct.held, name)
				} else {
					ct.held[name] = *u.prev
				}
				ct.rejected[name] = u.version
			}
		} else {
			cl.r.stats.lateNacks++
		}
		ct.nackHold, ct.nackNonce, ct.nackSeq = true, nonce, ct.seq
	} else if decided && (ct.nackNonce == "" || e.seq > ct.nackSeq || nonce == ct.nackNonce) {
		ct.nackHold, ct.nackNonce = false, ""
	}
	ct.undo = nil
	for _, name := range unsub {
		if name != "*" {
			ct.dropped[name] = true
		} else if ct.wildcard {
			for _, held := range slices.Concat(slices.Collect(maps.Keys(ct.held)), slices.Collect(maps.Keys(ct.rejected))) {
				if !ct.explicit[held] {
					ct.dropped[held] = true
				}
			}
		}
	}
	process := true
	switch {
	case !ct.requested:
		ct.requested, ct.unseen = true, true
		ct.legacy = len(sub) == 0
		ct.wildcard = ct.legacy
		if ct.legacy {
			cl.r.stats.legacy++
		}
		process = !ct.legacy
	case ct.legacy && len(sub) == 0:
		process = false // still a legacy wildcard: unsubscriptions are ignored
	case ct.legacy:
		ct.legacy = false // names given: no longer legacy, still wildcard
	}
	if process {
		for _, name := range sub {
			if name == "*" {
				ct.wildcard = true
			} else {
				ct.explicit[name] = true
				ct.resendOK[name] = true // a name subscribed again is sent again
			}
		}
		ask := map[string]bool{}
		for _, name := range unsub {
			if name == "*" {
				if ct.wildcard {
					cl.r.stats.wildcardDropped++
					for held := range ct.held {
						if !ct.explicit[held] {
							ct.letGo[held] = true
						}
					}
				}
				ct.wildcard = false
				continue
			}
			if ct.explicit[name] && ct.wildcard {
				ask[name] = true // go-control-plane marks it for the server to say whether the wildcard covers it
			} else {
				delete(ask, name) // forgotten
			}
			delete(ct.explicit, name)
			ct.recentUnsub[name] = true
			ct.letGo[name] = true
			delete(ct.rejected, name) // the server forgets the version it sent, or marks it unknown
		}
		// The client drops what it unsubscribed, unless the server is to say whether a wildcard it keeps covers it.
		for _, name := range unsub {
			if name == "*" {
				continue
			}
			if !ask[name] || !ct.wildcard {
				delete(ct.held, name)
			}
		}
		for _, name := range sub {
			if name != "*" && ct.explicit[name] {
				cl.expect = append(cl.expect, subscribeExpectation{typeURL, name, initial[name]})
			}
		}
	}
	ct.recentWildcard = ct.recentWildcard || wasWildcard || ct.wildcard
	ct.activeWatch, ct.current = true, true
	cl.sendRaw(req)
}

// fence sends a fresh name of the fence type and takes every response until its answer.
func (cl *fuzzClient) fence() {
	r := cl.r
	r.t.Helper()
	if cl.st == nil {
		cl.open()
	}
	cl.fences++
	name := fmt.Sprintf("fence-%d", cl.fences)
	cl.sendRaw(&discovery.DeltaDiscoveryRequest{TypeUrl: fenceType, ResourceNamesSubscribe: []string{name}})
	cl.dump = nil
	deadline := time.After(answerWithin)
	for {
		select {
		case resp := <-cl.recv:
			if resp.TypeUrl == fenceType {
				if !slices.Equal(resp.RemovedResources, []string{name}) || len(resp.Resources) > 0 {
					r.fail("client %s: the fence %s was answered with resources %v, removed %v", cl.label, name, names(resp), resp.RemovedResources)
				}
				cl.sawVersion(resp)
				for _, ct := range cl.types {
					ct.recentUnsub, ct.recentWildcard, ct.scopeBefore = map[string]bool{}, ct.wildcard, nil
				}
				return
			}
			cl.receive(resp)
		case <-deadline:
			r.fail("client %s: no answer to the fence %s within %v (a subscribed name that does not exist is answered at once "+
				"in removed_resources)", cl.label, name, answerWithin)
		}
	}
}

func (cl *fuzzClient) sawVersion(resp *discovery.DeltaDiscoveryResponse) {
	v, err := strconv.ParseUint(resp.SystemVersionInfo, 10, 64)
	if err != nil {
		cl.r.fail("client %s: system_version_info %q is not the model version", cl.label, resp.SystemVersionInfo)
	}
	if v < cl.sysVer {
		cl.r.fail("client %s: system_version_info went back from %d to %d", cl.label, cl.sysVer, v)
	}
	cl.sysVer = v
}

// receive checks a response as it arrives and applies it.
func (cl *fuzzClient) receive(resp *discovery.DeltaDiscoveryResponse) {
	r := cl.r
	r.t.Helper()
	typeURL := resp.TypeUrl
	r.logf("  %s <- %s nonce %s v%s resources %v removed %v", cl.label, shortType(typeURL), resp.Nonce, resp.SystemVersionInfo,
		namesAtVersions(resp), resp.RemovedResources)
	if !slices.Contains(cache.ServedTypes, typeURL) {
		r.fail("client %s: a response of a type it never asked for: %s", cl.label, typeURL)
	}
	cl.sawVersion(resp)
	cl.nonces = append(cl.nonces, resp.Nonce)
	r.stats.responses++
	if r.inModel {
		r.stats.pushes++
		if r.inBind && typeURL == translate.ExtensionType {
			r.stats.rescoped++
		}
	}
	for _, res := range resp.Resources {
		if strings.HasSuffix(res.Name, "-send") {
			r.stats.sendClusters++
		}
	}
	ct := cl.typ(typeURL)
	if !ct.requested {
		r.fail("client %s: a %s response on a stream that never asked for the type", cl.label, shortType(typeURL))
	}
	seen, ignore := map[string]bool{}, map[string]bool{}
	for _, res := range resp.Resources {
		if seen[res.Name] {
			r.fail("client %s: %s %s twice in one response", cl.label, shortType(typeURL), res.Name)
		}
		seen[res.Name] = true
		if res.Resource.GetTypeUrl() != typeURL {
			r.fail("client %s: a %s response carries a %s", cl.label, shortType(typeURL), res.Resource.GetTypeUrl())
		}
		if want := contentHash(res.Resource.GetValue()); res.Version != want {
			r.fail("client %s: %s %s has version %s, but its content hashes to %s: versions must identify content", cl.label,
				shortType(typeURL), res.Name, res.Version, want)
		}
		if got := decodedName(r, typeURL, res.Resource.GetValue()); got != res.Name {
			r.fail("client %s: %s %q holds a resource named %q", cl.label, shortType(typeURL), res.Name, got)
		}
		if v, ok := ct.rejected[res.Name]; ok && v == res.Version && !ct.resendOK[res.Name] {
			r.fail("client %s: rejected %s %s at version %s, and was sent that version again unasked (docs/xds.md: nothing is "+
				"resent until the resource changes)", cl.label, shortType(typeURL), res.Name, v)
		}
		if !ct.wildcard && !ct.explicit[res.Name] {
			if ct.recentUnsub[res.Name] || ct.recentWildcard {
				ignore[res.Name] = true // computed before the client let it go: go-control-plane forgets it, the client drops it
				continue
			}
			r.fail("client %s: sent %s %s, which it never subscribed to (explicit %v)", cl.label, shortType(typeURL), res.Name,
				slices.Sorted(maps.Keys(ct.explicit)))
		}
		if typeURL == translate.RouteType && !ct.explicit[res.Name] && !ct.recentUnsub[res.Name] &&
			!slices.Contains(cl.scope(), res.Name) && !slices.Contains(ct.scopeBefore, res.Name) {
			r.fail("client %s: sent route %s, neither subscribed by name nor in its scope %v", cl.label, res.Name, cl.scope())
		}
	}
	for _, name := range resp.RemovedResources {
		if seen[name] {
			r.fail("client %s: %s %s both sent and removed in one response", cl.label, shortType(typeURL), name)
		}
	}
	// No break before make: a cluster removed while a config or route the client holds still names it, unless the
	// client let it go itself; and none this input's model had is removed before its retention (ten minutes).
	if typeURL == translate.ClusterType || typeURL == translate.EndpointType {
		named := cl.namedClusters()
		for _, name := range resp.RemovedResources {
			if by, ok := named[name]; ok && !ct.dropped[name] {
				r.fail("client %s: %s removed %s while its %s still routes to it", cl.label, shortType(typeURL), name, by)
			}
			if _, held := ct.held[name]; held && !ct.dropped[name] && r.liveHere[name] {
				r.fail("client %s: %s removed %s, which it did not let go, before its retention ended", cl.label, shortType(typeURL), name)
			}
		}
	}
	// Apply it, ready to revert.
	ct.undo = map[string]undoEntry{}
	for _, res := range resp.Resources {
		if ignore[res.Name] {
			continue
		}
		var prev *heldRes
		if h, ok := ct.held[res.Name]; ok {
			prev = &h
		}
		ct.undo[res.Name] = undoEntry{prev: prev, version: res.Version}
		ct.held[res.Name] = heldRes{version: res.Version, body: res.Resource.GetValue()}
		delete(ct.rejected, res.Name)
		delete(ct.resendOK, res.Name)
		delete(ct.dropped, res.Name)
		ct.sent[res.Name] = true
		ct.mentioned[res.Name] = true
	}
	for _, name := range resp.RemovedResources {
		if h, ok := ct.held[name]; ok {
			ct.undo[name] = undoEntry{prev: &h}
		}
		delete(ct.held, name)
		delete(ct.rejected, name)
		ct.mentioned[name] = true
	}
	ct.latestNonce, ct.nackHold, ct.activeWatch, ct.current, ct.unseen = resp.Nonce, false, false, true, false
	ct.seq++
	if len(ct.inflight) == 16 {
		ct.inflight = ct.inflight[1:]
	}
	ct.inflight = append(ct.inflight, fuzzSent{resp.Nonce, ct.seq})
	// Make before break: a config arrives after every cluster it names, on each of CDS and EDS the stream asked for.
	if typeURL == translate.ExtensionType {
		for _, res := range resp.Resources {
			for _, name := range clustersNamed(r, typeURL, res.Resource.GetValue()) {
				cl.mustHoldCluster(name, "ECDS config "+res.Name+" (on arrival)")
			}
		}
	}
}

// mustHoldCluster fails unless the client holds a cluster on each of CDS and EDS it subscribed to on this stream
// (or rejected it: the server counts it as sent).
func (cl *fuzzClient) mustHoldCluster(name, by string) {
	for _, typeURL := range []string{translate.ClusterType, translate.EndpointType} {
		ct := cl.types[typeURL]
		if ct == nil || !ct.requested || ct.unseen {
			continue
		}
		if _, ok := ct.held[name]; !ok && ct.rejected[name] == "" {
			cl.r.fail("client %s: its %s names cluster %s, which its %s subscription does not hold (held %v)", cl.label, by, name,
				shortType(typeURL), slices.Sorted(maps.Keys(ct.held)))
		}
	}
}

// namedClusters returns the clusters the client's ECDS config and routes name, each with what names it.
func (cl *fuzzClient) namedClusters() map[string]string {
	out := map[string]string{}
	for _, typeURL := range []string{translate.ExtensionType, translate.RouteType} {
		ct := cl.types[typeURL]
		if ct == nil {
			continue
		}
		for name, h := range ct.held {
			for _, c := range clustersNamed(cl.r, typeURL, h.body) {
				out[c] = shortType(typeURL) + " " + name
			}
		}
	}
	return out
}

// checkStep checks what a step's fence proves: every response the step called for has arrived.
func (cl *fuzzClient) checkStep() {
	r := cl.r
	r.t.Helper()
	// A subscribed name is answered at once: sent if it exists, in removed_resources if it does not (ECDS and the
	// listener wait for their clusters, and a type the client NACKed may be held back, so those are left out).
	for _, e := range cl.expect {
		ct := cl.types[e.typeURL]
		if ct.nackHold || e.typeURL == translate.ExtensionType || e.typeURL == translate.ListenerType {
			continue
		}
		exists, version, known := cl.exists(e.typeURL, e.name)
		if !known {
			continue
		}
		if e.declared != "" && exists && e.declared == version {
			if ct.sent[e.name] {
				r.fail("client %s: declared %s %s at its current version %s on a new stream, and was sent it again", cl.label,
					shortType(e.typeURL), e.name, version)
			}
			r.stats.declaredNotResent++
			continue // declared on a new stream with the current version: not sent again
		}
		if !ct.mentioned[e.name] {
			r.fail("client %s: subscribed to %s %s (exists: %v) and was answered neither with it nor in removed_resources",
				cl.label, shortType(e.typeURL), e.name, exists)
		}
		if !exists {
			r.stats.unknownAnswered++
		}
	}
	cl.expect = nil
	for _, ct := range cl.types {
		ct.mentioned, ct.sent = map[string]bool{}, map[string]bool{}
	}
	for typeURL, ct := range cl.types {
		if ct.nackHold || !ct.current || !ct.requested {
			continue
		}
		if (typeURL == translate.ExtensionType || typeURL == translate.ListenerType) && !cl.gateOpen() {
			continue
		}
		cl.checkHeld(typeURL, ct)
	}
	// Names let go are gone, unless still subscribed or still covered by the wildcard view.
	for typeURL, ct := range cl.types {
		if !ct.nackHold && ct.current && len(ct.letGo) > 0 {
			dump := cl.dumpNames(typeURL)
			for name := range ct.letGo {
				_, held := ct.held[name]
				if !held || ct.explicit[name] || ct.wildcard && dump[name] != "" || hasName(ct.rejected, name) {
					continue
				}
				if (typeURL == translate.ExtensionType || typeURL == translate.ListenerType) && !cl.gateOpen() {
					continue
				}
				r.fail("client %s: let %s %s go, but still holds it (docs/xds.md: what the client itself let go goes at once)",
					cl.label, shortType(typeURL), name)
			}
		}
		ct.letGo = map[string]bool{}
	}
	// The ECDS config the client holds names only clusters it holds, but those it let go itself.
	if ct := cl.types[translate.ExtensionType]; ct != nil {
		for name, h := range ct.held {
			for _, c := range clustersNamed(r, translate.ExtensionType, h.body) {
				cl.mustHoldSubscribedCluster(c, "ECDS config "+name)
			}
		}
	}
}

// mustHoldSubscribedCluster is mustHoldCluster on the types whose subscription still covers the cluster.
func (cl *fuzzClient) mustHoldSubscribedCluster(name, by string) {
	for _, typeURL := range []string{translate.ClusterType, translate.EndpointType} {
		ct := cl.types[typeURL]
		if ct == nil || !ct.requested || ct.nackHold || !ct.current || ct.dropped[name] {
			continue
		}
		// A wildcard covers the clusters the node uses now; a stale config may name older ones, which the client
		// keeps if it had them (no removal before the retention: checked as removals arrive).
		if !ct.explicit[name] && !(ct.wildcard && cl.dumpNames(translate.ClusterType)[name] != "") {
			continue
		}
		if _, ok := ct.held[name]; !ok && ct.rejected[name] == "" {
			cl.r.fail("client %s: its %s names cluster %s, which its %s subscription covers but does not hold (held %v)", cl.label,
				by, name, shortType(typeURL), slices.Sorted(maps.Keys(ct.held)))
		}
	}
}

// checkHeld: the client holds nothing it does not subscribe to — outside a wildcard only its explicit names (or
// a removal it rejected); under a wildcard, for routes, only its scope.
func (cl *fuzzClient) checkHeld(typeURL string, ct *clientTypeState) {
	r := cl.r
	for name := range ct.held {
		if ct.explicit[name] || ct.rejected[name] == "" && hasName(ct.rejected, name) {
			continue
		}
		switch {
		case !ct.wildcard:
			r.fail("client %s: holds %s %s without a subscription to it (explicit %v)", cl.label, shortType(typeURL), name,
				slices.Sorted(maps.Keys(ct.explicit)))
		case typeURL == translate.RouteType && !slices.Contains(cl.scope(), name):
			r.fail("client %s: holds route %s, neither subscribed by name nor in its scope %v", cl.label, name, cl.scope())
		}
	}
}

func hasName[V any](m map[string]V, k string) bool {
	_, ok := m[k]
	return ok
}

// exists says whether a name exists for the model now (known false: cannot tell, a cluster of an earlier model
// that may still be retained), and its version for routes and clusters.
func (cl *fuzzClient) exists(typeURL, name string) (exists bool, version string, known bool) {
	r := cl.r
	switch typeURL {
	case translate.RouteType:
		tp := r.s.table.Topic(name)
		if tp == nil {
			return false, "", true
		}
		return true, protoContentHash(r, translate.TopicRoute(tp)), true
	case translate.ClusterType, translate.EndpointType:
		if v, ok := r.live[typeURL][name]; ok {
			return true, v, true
		}
		return false, "", !r.s.everLive[name]
	}
	return false, "", false
}

// dumpNames returns the names and versions ConfigDump says the client's node is served, for one type.
func (cl *fuzzClient) dumpNames(typeURL string) map[string]string {
	if cl.dump == nil {
		dump, ok := cl.r.s.cache.ConfigDump(cl.node.Id)
		if !ok {
			cl.r.fail("client %s: ConfigDump knows no stream of node %s", cl.label, cl.node.Id)
		}
		cl.dump = map[string]map[string]string{}
		for typeURL, rs := range dump {
			cl.dump[typeURL] = map[string]string{}
			for _, d := range rs {
				cl.dump[typeURL][d.Name] = d.Version
			}
		}
	}
	return cl.dump[typeURL]
}

// gateOpen: the client accepted (ACKed, or rejected over an earlier version it keeps) every cluster its node uses,
// on its cluster subscription and on its endpoint one (which a client taking clusters needs, asked for or not),
// so its ECDS config and listener are not held back.
func (cl *fuzzClient) gateOpen() bool {
	used := cl.dumpNames(translate.ClusterType)
	cds := cl.types[translate.ClusterType]
	takesClusters := cds != nil && cds.requested
	for _, typeURL := range []string{translate.ClusterType, translate.EndpointType} {
		ct := cl.types[typeURL]
		requested := ct != nil && ct.requested
		// A node that takes clusters waits for their endpoints too, asked for or not (docs/xds.md).
		if !requested && (typeURL != translate.EndpointType || !takesClusters) {
			continue
		}
		for name := range used {
			if ct == nil || !hasName(ct.held, name) { // held: received and not rejected (a rejection reverts it)
				return false
			}
		}
	}
	return true
}

// reconnect opens a new stream and asks again for every type it had, declaring what it holds.
func (cl *fuzzClient) reconnect() {
	legacy := map[string]bool{}
	for typeURL, ct := range cl.types {
		legacy[typeURL] = ct.legacy
	}
	cl.close()
	cl.open()
	for _, typeURL := range []string{translate.ClusterType, translate.EndpointType, translate.ListenerType, translate.ExtensionType,
		translate.RouteType} {
		ct := cl.types[typeURL]
		if ct == nil {
			continue
		}
		var sub []string
		if ct.wildcard && !legacy[typeURL] {
			sub = append(sub, "*")
		}
		sub = append(sub, slices.Sorted(maps.Keys(ct.explicit))...)
		initial := map[string]string{}
		for name, h := range ct.held {
			if !ct.wildcard && !ct.explicit[name] {
				delete(ct.held, name) // declared are only names subscribed to, as Envoy declares them
				continue
			}
			initial[name] = h.version
		}
		if len(sub) == 0 && !ct.wildcard {
			// Nothing subscribed: a request naming nothing would be a legacy wildcard. The new stream does not
			// ask for the type, so its next request of it is a first one.
			ct.requested = false
			continue
		}
		cl.r.logf("  %s -> %s subscribe %v declaring %v", cl.label, shortType(typeURL), sub, initial)
		cl.request(typeURL, sub, nil, "", false, initial)
	}
}

// settle acknowledges every latest response until the server has nothing more to say.
func (cl *fuzzClient) settle() {
	r := cl.r
	r.t.Helper()
	extra := false
	for round := 0; ; round++ {
		if round > 8 {
			r.fail("client %s: still getting responses after %d rounds of acknowledgements", cl.label, round)
		}
		before := len(cl.nonces)
		for _, typeURL := range cache.ServedTypes {
			ct := cl.types[typeURL]
			if ct == nil || !ct.requested {
				continue
			}
			if ct.latestNonce != "" {
				cl.request(typeURL, nil, nil, ct.latestNonce, false, nil)
			}
		}
		cl.fence()
		cl.expect = nil
		if len(cl.nonces) != before || cl.waitBackoff() {
			continue
		}
		// A backoff that ended between this round's requests and the look above held their answers back, and
		// its retry timer sends them (late, on a loaded machine): one more round collects them.
		if !extra && cl.nacked() {
			extra = true
			continue
		}
		return
	}
}

// nacked reports whether a rejection stands on some type of the client's node.
func (cl *fuzzClient) nacked() bool {
	for _, st := range cl.r.s.cache.Streams() {
		if st.Node != cl.node.Id {
			continue
		}
		for _, ts := range st.Types {
			if ts.State == cache.Nacked {
				return true
			}
		}
	}
	return false
}

// waitBackoff waits until no NACK backoff holds a response to the client's node back, and reports whether one did.
func (cl *fuzzClient) waitBackoff() bool {
	var until time.Time
	for _, st := range cl.r.s.cache.Streams() {
		if st.Node != cl.node.Id {
			continue
		}
		for _, ts := range st.Types {
			if ts.BackoffUntil.After(until) {
				until = ts.BackoffUntil
			}
		}
	}
	if until.IsZero() {
		return false
	}
	time.Sleep(time.Until(until) + 5*time.Millisecond)
	return true
}

// checkQuiet compares a quiet client's view with what ConfigDump says its node is served, and ConfigDump with what
// the model says the node should be served.
func (cl *fuzzClient) checkQuiet() {
	r := cl.r
	r.t.Helper()
	cl.checkDump()
	for typeURL, ct := range cl.types {
		if !ct.requested {
			continue
		}
		if (typeURL == translate.ExtensionType || typeURL == translate.ListenerType) && !cl.gateOpen() {
			continue // held back until its clusters are sent: checked by mustHoldCluster
		}
		dump := cl.dumpNames(typeURL)
		want := map[string]string{}
		if ct.wildcard {
			maps.Copy(want, dump)
		}
		for name := range ct.explicit {
			switch v, ok := dump[name]; {
			case ok:
				want[name] = v
			case typeURL == translate.ClusterType || typeURL == translate.EndpointType:
				if v, ok := r.live[typeURL][name]; ok {
					want[name] = v
				}
			}
		}
		for name, v := range want {
			h, ok := ct.held[name]
			if ok && h.version == v || ct.rejected[name] == v {
				continue
			}
			r.fail("client %s, quiet: %s %s is served at version %s, the client holds %q (ConfigDump %v)", cl.label, shortType(typeURL),
				name, v, h.version, dump)
		}
		for name := range ct.held {
			if _, ok := want[name]; ok {
				continue
			}
			if v, ok := ct.rejected[name]; ok && v == "" {
				continue // the client rejected its removal
			}
			cluster := typeURL == translate.ClusterType || typeURL == translate.EndpointType
			switch {
			case cluster && ct.wildcard:
				r.stats.kept++
				continue // a retired cluster, or a live one that left the node's view: kept for the retention
			case cluster && ct.explicit[name] && r.s.everLive[name]:
				continue // subscribed by name to a cluster an earlier model had, still retained
			}
			r.fail("client %s, quiet: holds %s %s, which its node is not served (ConfigDump %v, subscription wildcard %v explicit %v)",
				cl.label, shortType(typeURL), name, dump, ct.wildcard, slices.Sorted(maps.Keys(ct.explicit)))
		}
	}
	// Every cluster a held route or current config names is held, on the types it subscribes to by wildcard.
	gate := cl.gateOpen()
	for name, by := range cl.namedClusters() {
		if strings.HasPrefix(by, shortType(translate.ExtensionType)) && !gate {
			continue // a config held back names the clusters of an earlier model
		}
		for _, typeURL := range []string{translate.ClusterType, translate.EndpointType} {
			ct := cl.types[typeURL]
			if ct == nil || !ct.requested || !ct.wildcard || ct.dropped[name] {
				continue
			}
			if _, ok := ct.held[name]; !ok && ct.rejected[name] == "" && !cl.rejectedNames(by) {
				r.fail("client %s, quiet: its %s names cluster %s, missing from its wildcard %s", cl.label, by, name, shortType(typeURL))
			}
		}
	}
}

// checkDump checks ConfigDump against the model: the routes of the node's scope (metadata and binding) and of the
// topics its stream subscribes to by name, the clusters they route to, and an ECDS route table of its scope.
func (cl *fuzzClient) checkDump() {
	r := cl.r
	r.t.Helper()
	topics := cl.scope()
	if ct := cl.types[translate.RouteType]; ct != nil && ct.requested {
		topics = append(topics, slices.Collect(maps.Keys(ct.explicit))...)
	}
	topics = slices.Compact(slices.Sorted(slices.Values(topics)))
	wantRoutes, wantClusters := map[string]bool{}, map[string]bool{}
	var scoped []string
	for _, name := range topics {
		tp := r.s.table.Topic(name)
		if tp == nil {
			continue
		}
		wantRoutes[name] = true
		for _, c := range translate.ClusterNames(tp.BrokerSet) {
			wantClusters[c] = true
		}
		if slices.Contains(cl.scope(), name) {
			scoped = append(scoped, name)
		}
	}
	for typeURL, want := range map[string]map[string]bool{translate.RouteType: wantRoutes, translate.ClusterType: wantClusters,
		translate.EndpointType: wantClusters} {
		got := slices.Sorted(maps.Keys(cl.dumpNames(typeURL)))
		if !slices.Equal(got, slices.Sorted(maps.Keys(want))) {
			r.fail("client %s, quiet: ConfigDump serves %s %v; the model (scope %v, topics %v) says %v", cl.label, shortType(typeURL), got,
				cl.scope(), topics, slices.Sorted(maps.Keys(want)))
		}
	}
	ct := cl.types[translate.ExtensionType]
	if ct == nil || !ct.requested || !cl.gateOpen() {
		return
	}
	h, ok := ct.held[translate.ExtensionConfigName]
	if !ok || hasName(ct.rejected, translate.ExtensionConfigName) {
		return
	}
	if got, want := ecdsConfigTopics(r, h.body), slices.Sorted(slices.Values(scoped)); !slices.Equal(got, want) {
		r.fail("client %s, quiet: its ECDS route table routes topics %v; its scope %v has %v", cl.label, got, cl.scope(), want)
	}
}

// ecdsConfigTopics returns the topics an ECDS config routes, sorted.
func ecdsConfigTopics(r *deltaRun, body []byte) []string {
	var ext corev3.TypedExtensionConfig
	var p rmqv3.RocketmqProxy
	if err := proto.Unmarshal(body, &ext); err != nil {
		r.fail("ECDS: %v", err)
	}
	if err := ext.GetTypedConfig().UnmarshalTo(&p); err != nil {
		r.fail("ECDS: %v", err)
	}
	var out []string
	for _, rt := range p.GetRouteConfig().GetRoutes() {
		out = append(out, rt.GetMatch().GetTopic().GetExact())
	}
	return slices.Compact(slices.Sorted(slices.Values(out)))
}

// rejectedNames reports whether the route or config named by "Type name" holds content the client rejected an
// update of (so the server counts the newer version, naming other clusters, as sent).
func (cl *fuzzClient) rejectedNames(by string) bool {
	typ, name, _ := strings.Cut(by, " ")
	for typeURL, ct := range cl.types {
		if shortType(typeURL) == typ && hasName(ct.rejected, name) {
			return true
		}
	}
	return false
}

func namesAtVersions(r *discovery.DeltaDiscoveryResponse) []string {
	var out []string
	for _, res := range r.Resources {
		out = append(out, res.Name+"@"+res.Version)
	}
	return out
}

// decodedName decodes a resource and returns the name it carries, checking it with its generated validation.
func decodedName(r *deltaRun, typeURL string, body []byte) string {
	var m interface {
		proto.Message
		ValidateAll() error
	}
	switch typeURL {
	case translate.ClusterType:
		m = &clusterv3.Cluster{}
	case translate.EndpointType:
		m = &endpointv3.ClusterLoadAssignment{}
	case translate.ListenerType:
		m = &listenerv3.Listener{}
	case translate.ExtensionType:
		m = &corev3.TypedExtensionConfig{}
	case translate.RouteType:
		m = &rmqv3.RouteConfiguration{}
	}
	if err := proto.Unmarshal(body, m); err != nil {
		r.fail("%s does not decode: %v", shortType(typeURL), err)
	}
	if err := m.ValidateAll(); err != nil {
		r.fail("%s fails ValidateAll: %v", shortType(typeURL), err)
	}
	switch m := m.(type) {
	case *clusterv3.Cluster:
		return m.GetName()
	case *endpointv3.ClusterLoadAssignment:
		return m.GetClusterName()
	case *listenerv3.Listener:
		return m.GetName()
	case *corev3.TypedExtensionConfig:
		return m.GetName()
	case *rmqv3.RouteConfiguration:
		return m.GetName()
	}
	return ""
}

// clustersNamed returns the clusters an ECDS config or a route names.
func clustersNamed(r *deltaRun, typeURL string, body []byte) []string {
	var rc *rmqv3.RouteConfiguration
	switch typeURL {
	case translate.ExtensionType:
		var ext corev3.TypedExtensionConfig
		var p rmqv3.RocketmqProxy
		if err := proto.Unmarshal(body, &ext); err != nil {
			r.fail("ECDS: %v", err)
		}
		if err := ext.GetTypedConfig().UnmarshalTo(&p); err != nil {
			r.fail("ECDS: %v", err)
		}
		rc = p.GetRouteConfig()
	case translate.RouteType:
		rc = &rmqv3.RouteConfiguration{}
		if err := proto.Unmarshal(body, rc); err != nil {
			r.fail("route: %v", err)
		}
	default:
		return nil
	}
	var out []string
	for _, rt := range rc.GetRoutes() {
		if c := rt.GetRoute().GetCluster(); !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out
}
