package interop

// Envoy's RocketMQ proxy filter (envoyproxy/envoy, contrib/rocketmq_proxy/filters/network/source/) answers a route
// query, GET_ROUTEINFO_BY_TOPIC (105), itself, from the hosts of the cluster the topic's route names. Its answer
// is not a NameServer's. The fixtures in testdata/envoy-105-*.bin are that answer, byte for byte, written by a
// model of the filter's code below; the tests serve them to the real clients as a NameServer answer:
//
//   - ActiveMessage::onQueryTopicRoute (active_message.cc) walks every host of every priority of the routed
//     cluster: one QueueData per host (broker_name, read_queue_num, write_queue_num, perm from the host's
//     envoy.filters.network.rocketmq_proxy metadata, a missing number read as 0), and the host's address under
//     its broker_id in the BrokerData of its (cluster_name, broker_name) (fillBrokerData keeps the first address
//     of an id). No route, or a route to a cluster Envoy does not hold, gets ConnectionManager::onError
//     (conn_manager.cc) with "Cluster is not available": code 1 (SYSTEM_ERROR), not 17 (TOPIC_NOT_EXIST).
//   - TopicRouteData::encode (topic_route.cc) fills a google.protobuf.Struct, and reuses that Struct as scratch:
//     QueueData::encode and BrokerData::encode write their keys into the top level, and the whole top level is
//     copied into the list after each. So every queueDatas entry is clean, every brokerDatas entry also carries
//     the last QueueData's perm, readQueueNums and writeQueueNums and the whole queueDatas list, and the top level
//     keeps the last BrokerData's brokerAddrs, brokerName and cluster and the last QueueData's numbers. Neither
//     list is written when it is empty: a cluster without hosts answers SUCCESS with the body {}.
//   - MessageUtil::getJsonStringFromMessageOrError (source/common/protobuf/yaml_utility.cc) prints the Struct with
//     protobuf's JSON printer (json/internal/unparser.cc and writer.h): no whitespace, numbers as doubles in
//     SimpleDtoa's form (integral values with no fraction: 4, not 4.0), broker ids as quoted keys (the Struct's
//     keys are std::to_string of the id), and the keys of every object in the order the Struct's protobuf Map
//     iterates them (WriteMap, ForEachMapEntry: hash order, not sorted, and it can change between runs). The
//     model sorts them, one order Envoy can write; both clients read JSON objects by key, so the order cannot
//     matter to them.
//   - Encoder::encode (codec.cc) writes the frame: int32 total length, int32 header length (no serialize-type bits:
//     0, JSON), the header (again a Struct printed by protobuf: code, language "CPP", version, opaque, flag 1,
//     remark when not empty, serializeTypeCurrentRPC "JSON", never extFields here), then the body. The route answer
//     copies the request's version and opaque (onQueryTopicRoute builds RemotingCommand(SUCCESS, request version,
//     request opaque)); the error answer copies the opaque only and carries version 0 (a default RemotingCommand).
//
// The fixtures answer a request with opaque fixtureOpaque and version fixtureVersion; the fake server below serves
// each request the fixture's bytes with the request's opaque (and, for the route answers, its version) written in,
// as Envoy would have written them.

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	rmqerrors "github.com/apache/rocketmq-client-go/v2/errors"
	"github.com/apache/rocketmq-client-go/v2/primitive"

	"github.com/rocketpilot/rocketpilot/remoting"
)

var update = flag.Bool("update", false, "rewrite testdata/envoy-105-*.bin from the model of Envoy's 105 answer")

const (
	// envoyTopic is routed to a cluster with the hosts envoyHosts; envoyEmptyTopic to a cluster without hosts.
	// Every other topic has no route.
	envoyTopic      = "TopicTest"
	envoyEmptyTopic = "interop-envoy-empty-cluster"
	envoyCluster    = "DefaultCluster"

	// The request the fixtures answer: rocketmq-client-go's 105 (version 317) with opaque 42.
	fixtureOpaque  int32 = 42
	fixtureVersion       = remoting.VersionClientGo

	// remarkNoCluster is Envoy's remark for a 105 without a route or without its cluster (onQueryTopicRoute).
	remarkNoCluster = "Cluster is not available"
	// remarkNotSupported is Envoy's remark for any request code its filter does not handle (dispatch).
	remarkNotSupported = "Request not supported"
)

// envoyHost is one host of the routed cluster as onQueryTopicRoute reads it: its address and its
// envoy.filters.network.rocketmq_proxy metadata (numbers that are absent read as 0).
type envoyHost struct {
	addr                                  string
	brokerName, clusterName               string
	brokerID, readQueueNum, writeQueueNum int32
	perm                                  int32
}

// envoyHosts is TopicTest's cluster, with the metadata rocketpilot's endpoints carry (xds/translate
// endpointMetadata): broker-a's master (id 0) carries the group's queues (4 read, 4 write, perm 6), its slave (id
// 1) carries none (rocketpilot leaves the numbers out, so that Envoy's one-QueueData-per-host answer does not
// repeat the group's queues), and broker-b has a master only. Envoy walks them in this order (the endpoints'
// order in the ClusterLoadAssignment). The addresses are loopback ports nothing listens at: no test connects.
var envoyHosts = []envoyHost{
	{addr: "127.0.0.1:10911", brokerName: "broker-a", clusterName: envoyCluster, brokerID: 0, readQueueNum: 4, writeQueueNum: 4, perm: 6},
	{addr: "127.0.0.1:10912", brokerName: "broker-a", clusterName: envoyCluster, brokerID: 1},
	{addr: "127.0.0.1:10921", brokerName: "broker-b", clusterName: envoyCluster, brokerID: 0, readQueueNum: 4, writeQueueNum: 4, perm: 6},
}

// envoyTopicRoute returns the google.protobuf.Struct Envoy serializes as the body of its 105 answer for a cluster
// with hosts: ActiveMessage::onQueryTopicRoute gathers the QueueData and BrokerData lists, TopicRouteData::encode
// fills the Struct. Values are string, float64 (a Struct's numbers are doubles), map[string]any and []any.
func envoyTopicRoute(hosts []envoyHost) map[string]any {
	// onQueryTopicRoute and fillBrokerData.
	type brokerData struct {
		cluster, name string
		addrs         map[int64]string
	}
	var brokers []*brokerData
	for _, h := range hosts {
		i := slices.IndexFunc(brokers, func(b *brokerData) bool { return b.cluster == h.clusterName && b.name == h.brokerName })
		if i < 0 {
			brokers = append(brokers, &brokerData{cluster: h.clusterName, name: h.brokerName, addrs: map[int64]string{}})
			i = len(brokers) - 1
		}
		if _, dup := brokers[i].addrs[int64(h.brokerID)]; !dup { // "Duplicate broker_id found": the first stays
			brokers[i].addrs[int64(h.brokerID)] = h.addr
		}
	}

	// TopicRouteData::encode: QueueData::encode and BrokerData::encode write into top, the Struct being filled,
	// and each list entry is a copy (CopyFrom) of all of top at that moment.
	top := map[string]any{}
	if len(hosts) > 0 {
		var list []any
		for _, h := range hosts {
			top["brokerName"] = h.brokerName
			top["readQueueNums"] = float64(h.readQueueNum)
			top["writeQueueNums"] = float64(h.writeQueueNum)
			top["perm"] = float64(h.perm)
			list = append(list, maps.Clone(top))
		}
		top["queueDatas"] = list
	}
	if len(brokers) > 0 {
		var list []any
		for _, b := range brokers {
			top["cluster"] = b.cluster
			top["brokerName"] = b.name
			if len(b.addrs) > 0 { // never empty here: a BrokerData is made with its first address
				addrs := map[string]any{}
				for id, addr := range b.addrs {
					addrs[strconv.FormatInt(id, 10)] = addr // std::to_string(broker id)
				}
				top["brokerAddrs"] = addrs
			}
			list = append(list, maps.Clone(top))
		}
		top["brokerDatas"] = list
	}
	return top
}

// appendProtoJSON appends v as protobuf's JSON printer writes a google.protobuf.Value with Envoy's options (no
// whitespace): objects with their keys sorted (Envoy's order is the map's, unspecified), strings quoted, numbers
// in SimpleDtoa's form. Strings are limited to printable ASCII without quotes or backslashes, which need no escape.
func appendProtoJSON(b []byte, v any) ([]byte, error) {
	var err error
	switch v := v.(type) {
	case string:
		for _, c := range []byte(v) {
			if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
				return nil, fmt.Errorf("string %q needs escaping, which the model does not do", v)
			}
		}
		b = append(append(append(b, '"'), v...), '"')
	case float64:
		b = append(b, simpleDtoa(v)...)
	case map[string]any:
		b = append(b, '{')
		for i, k := range slices.Sorted(maps.Keys(v)) {
			if i > 0 {
				b = append(b, ',')
			}
			if b, err = appendProtoJSON(b, k); err != nil {
				return nil, err
			}
			if b, err = appendProtoJSON(append(b, ':'), v[k]); err != nil {
				return nil, err
			}
		}
		b = append(b, '}')
	case []any:
		b = append(b, '[')
		for i, e := range v {
			if i > 0 {
				b = append(b, ',')
			}
			if b, err = appendProtoJSON(b, e); err != nil {
				return nil, err
			}
		}
		b = append(b, ']')
	default:
		return nil, fmt.Errorf("no google.protobuf.Value kind for %T", v)
	}
	return b, nil
}

// simpleDtoa formats f as protobuf's io::SimpleDtoa: %.15g, or %.17g when that does not read back as f.
func simpleDtoa(f float64) string {
	s := strconv.FormatFloat(f, 'g', 15, 64)
	if g, err := strconv.ParseFloat(s, 64); err != nil || g != f {
		s = strconv.FormatFloat(f, 'g', 17, 64)
	}
	return s
}

// envoyAnswer is the frame Encoder::encode writes for a response without a custom header.
func envoyAnswer(code, version, opaque int32, remark string, body []byte) ([]byte, error) {
	h := map[string]any{
		"code":                    float64(code),
		"language":                "CPP", // RemotingCommand's default language_
		"version":                 float64(version),
		"opaque":                  float64(opaque),
		"flag":                    float64(remoting.FlagResponse), // markAsResponse
		"serializeTypeCurrentRPC": "JSON",                         // serialize_type_current_rpc_'s default
	}
	if remark != "" {
		h["remark"] = remark
	}
	header, err := appendProtoJSON(nil, h)
	if err != nil {
		return nil, err
	}
	return envoyFrame(header, body), nil
}

// envoyFrame writes the length words Encoder::encode writes before the header and the body.
func envoyFrame(header, body []byte) []byte {
	frame := binary.BigEndian.AppendUint32(nil, uint32(4+len(header)+len(body)))
	frame = binary.BigEndian.AppendUint32(frame, uint32(len(header))) // serialize type 0 (JSON) in the top byte
	return append(append(frame, header...), body...)
}

// envoyRouteAnswer is Envoy's 105 answer for a routed cluster with hosts (none: the body is {}).
func envoyRouteAnswer(hosts []envoyHost, opaque, version int32) ([]byte, error) {
	body, err := appendProtoJSON(nil, envoyTopicRoute(hosts))
	if err != nil {
		return nil, err
	}
	return envoyAnswer(remoting.Success, version, opaque, "", body)
}

// envoyErrorAnswer is ConnectionManager::onError's answer: SYSTEM_ERROR, version 0, the request's opaque.
func envoyErrorAnswer(opaque int32, remark string) ([]byte, error) {
	return envoyAnswer(remoting.SystemError, 0, opaque, remark, nil)
}

// envoyFixture is one of Envoy's 105 answers, stored in testdata.
type envoyFixture struct {
	file        string
	echoVersion bool // the answer carries the request's version (the route answers), or 0 (the error answer)
	build       func(opaque, version int32) ([]byte, error)
}

var (
	fixtureRoute = envoyFixture{"envoy-105-route.bin", true, func(opaque, version int32) ([]byte, error) {
		return envoyRouteAnswer(envoyHosts, opaque, version)
	}}
	fixtureNoHosts = envoyFixture{"envoy-105-no-hosts.bin", true, func(opaque, version int32) ([]byte, error) {
		return envoyRouteAnswer(nil, opaque, version)
	}}
	fixtureNoCluster = envoyFixture{"envoy-105-cluster-not-available.bin", false, func(opaque, _ int32) ([]byte, error) {
		return envoyErrorAnswer(opaque, remarkNoCluster)
	}}
	envoyFixtures = []envoyFixture{fixtureRoute, fixtureNoHosts, fixtureNoCluster}
)

func (f envoyFixture) read(t *testing.T) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", f.file))
	if err != nil {
		t.Fatalf("%v (go test -run TestEnvoyRouteFixtures -update writes it)", err)
	}
	return data
}

// answerTo returns fixture as Envoy writes it for a request with opaque and version: the fixture's header with
// that opaque (and, when the answer echoes it, that version) in place of its own, and the lengths recomputed.
func (f envoyFixture) answerTo(fixture []byte, opaque, version int32) ([]byte, error) {
	if len(fixture) < 8 || int(binary.BigEndian.Uint32(fixture)) != len(fixture)-4 {
		return nil, fmt.Errorf("%s: not one whole frame", f.file)
	}
	n := int(binary.BigEndian.Uint32(fixture[4:]))
	if n > len(fixture)-8 {
		return nil, fmt.Errorf("%s: header length %d out of range", f.file, n)
	}
	header, body := fixture[8:8+n], fixture[8+n:]
	header, err := replaceNumber(header, "opaque", opaque)
	if err == nil && f.echoVersion {
		header, err = replaceNumber(header, "version", version)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.file, err)
	}
	return envoyFrame(header, body), nil
}

// replaceNumber replaces the number of the one field key of a JSON header with v (an int32 prints alike in
// SimpleDtoa's form and in decimal).
func replaceNumber(header []byte, key string, v int32) ([]byte, error) {
	field := []byte(`"` + key + `":`)
	if bytes.Count(header, field) != 1 {
		return nil, fmt.Errorf("header %s has not exactly one %s", header, field)
	}
	start := bytes.Index(header, field) + len(field)
	end := start
	for end < len(header) && (header[end] == '-' || header[end] >= '0' && header[end] <= '9') {
		end++
	}
	if end == start {
		return nil, fmt.Errorf("header %s: %s is not a number", header, field)
	}
	return slices.Concat(header[:start], []byte(strconv.Itoa(int(v))), header[end:]), nil
}

// The fixtures' header and body, as a reader sees them.
const (
	wantRouteHeader = `{"code":0,"flag":1,"language":"CPP","opaque":42,"serializeTypeCurrentRPC":"JSON","version":317}`
	wantRouteBody   = `{` +
		`"brokerAddrs":{"0":"127.0.0.1:10921"},` + // stray: the last BrokerData's
		`"brokerDatas":[` +
		`{"brokerAddrs":{"0":"127.0.0.1:10911","1":"127.0.0.1:10912"},"brokerName":"broker-a","cluster":"DefaultCluster",` +
		`"perm":6,"queueDatas":[` + // stray: the last QueueData's numbers and all queueDatas, in every BrokerData
		`{"brokerName":"broker-a","perm":6,"readQueueNums":4,"writeQueueNums":4},` +
		`{"brokerName":"broker-a","perm":0,"readQueueNums":0,"writeQueueNums":0},` +
		`{"brokerName":"broker-b","perm":6,"readQueueNums":4,"writeQueueNums":4}],` +
		`"readQueueNums":4,"writeQueueNums":4},` +
		`{"brokerAddrs":{"0":"127.0.0.1:10921"},"brokerName":"broker-b","cluster":"DefaultCluster",` +
		`"perm":6,"queueDatas":[` +
		`{"brokerName":"broker-a","perm":6,"readQueueNums":4,"writeQueueNums":4},` +
		`{"brokerName":"broker-a","perm":0,"readQueueNums":0,"writeQueueNums":0},` +
		`{"brokerName":"broker-b","perm":6,"readQueueNums":4,"writeQueueNums":4}],` +
		`"readQueueNums":4,"writeQueueNums":4}],` +
		`"brokerName":"broker-b","cluster":"DefaultCluster","perm":6,` + // stray: the last BrokerData's and QueueData's
		`"queueDatas":[` + // one per host, the slave's all zero
		`{"brokerName":"broker-a","perm":6,"readQueueNums":4,"writeQueueNums":4},` +
		`{"brokerName":"broker-a","perm":0,"readQueueNums":0,"writeQueueNums":0},` +
		`{"brokerName":"broker-b","perm":6,"readQueueNums":4,"writeQueueNums":4}],` +
		`"readQueueNums":4,"writeQueueNums":4}`
	wantErrorHeader = `{"code":1,"flag":1,"language":"CPP","opaque":42,"remark":"Cluster is not available",` +
		`"serializeTypeCurrentRPC":"JSON","version":0}`
)

// TestEnvoyRouteFixtures checks testdata/envoy-105-*.bin against the model of Envoy's encoder (-update rewrites
// them), pins what they say, and checks that answerTo writes a request's opaque and version as Envoy would.
func TestEnvoyRouteFixtures(t *testing.T) {
	for _, f := range envoyFixtures {
		want, err := f.build(fixtureOpaque, fixtureVersion)
		if err != nil {
			t.Fatalf("%s: %v", f.file, err)
		}
		if *update {
			if err := os.WriteFile(filepath.Join("testdata", f.file), want, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		got := f.read(t)
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from the model of Envoy's answer (-update rewrites it):\n got %q\nwant %q", f.file, got, want)
		}
		for _, req := range []struct{ opaque, version int32 }{{fixtureOpaque, fixtureVersion}, {7, 121}, {-3, 401}, {1 << 30, 0}} {
			answer, err := f.answerTo(got, req.opaque, req.version)
			if err != nil {
				t.Fatal(err)
			}
			if want, _ := f.build(req.opaque, req.version); !bytes.Equal(answer, want) {
				t.Errorf("%s answering opaque %d version %d:\n got %q\nwant %q", f.file, req.opaque, req.version, answer, want)
			}
		}
	}

	split := func(f envoyFixture) (header, body string, cmd *remoting.Command) {
		frame := f.read(t)
		n := binary.BigEndian.Uint32(frame[4:])
		cmd, err := remoting.Decode(frame[4:]) // rocketpilot's codec reads it as one JSON-header frame too
		if err != nil {
			t.Fatalf("%s: %v", f.file, err)
		}
		return string(frame[8 : 8+n]), string(frame[8+n:]), cmd
	}
	header, body, cmd := split(fixtureRoute)
	if header != wantRouteHeader || body != wantRouteBody {
		t.Errorf("%s:\nheader %s\n  body %s\nwant\nheader %s\n  body %s", fixtureRoute.file, header, body, wantRouteHeader, wantRouteBody)
	}
	if cmd.Code != remoting.Success || cmd.Language != remoting.LanguageCPP || cmd.Opaque != fixtureOpaque || cmd.Version != fixtureVersion {
		t.Errorf("%s decodes as %v", fixtureRoute.file, cmd)
	}
	if _, err := remoting.DecodeTopicRouteData([]byte(body)); err != nil {
		t.Errorf("%s: rocketpilot's route decoder: %v", fixtureRoute.file, err)
	}
	if header, body, _ = split(fixtureNoHosts); header != wantRouteHeader || body != "{}" {
		t.Errorf("%s: header %s body %s, want header %s body {}", fixtureNoHosts.file, header, body, wantRouteHeader)
	}
	if header, body, cmd = split(fixtureNoCluster); header != wantErrorHeader || body != "" || cmd.Remark != remarkNoCluster {
		t.Errorf("%s: header %s body %q, want header %s and no body", fixtureNoCluster.file, header, body, wantErrorHeader)
	}
}

// fakeEnvoy is a loopback server that answers 105 as Envoy's RocketMQ filter does, from the fixtures: envoyTopic
// with fixtureRoute, envoyEmptyTopic with fixtureNoHosts, any other topic with fixtureNoCluster, each with the
// request's opaque (and version) written in; any other request code with "Request not supported". It records the
// requests and the answers.
type fakeEnvoy struct {
	*frameServer
	fixtures map[string][]byte // by file

	mu    sync.Mutex
	trips []roundTrip
}

func startFakeEnvoy(t *testing.T) *fakeEnvoy {
	t.Helper()
	e := &fakeEnvoy{frameServer: listenFrameServer(t, "fake Envoy"), fixtures: map[string][]byte{}}
	for _, f := range envoyFixtures {
		e.fixtures[f.file] = f.read(t)
	}
	e.start(e.respond)
	return e
}

func (e *fakeEnvoy) respond(req *remoting.Command) ([]byte, error) {
	var (
		frame []byte
		err   error
	)
	if req.Code != remoting.GetRouteInfoByTopic {
		frame, err = envoyErrorAnswer(req.Opaque, remarkNotSupported)
	} else {
		f := fixtureNoCluster
		switch req.Ext("topic") {
		case envoyTopic:
			f = fixtureRoute
		case envoyEmptyTopic:
			f = fixtureNoHosts
		}
		frame, err = f.answerTo(e.fixtures[f.file], req.Opaque, req.Version)
	}
	if err != nil {
		return nil, err
	}
	resp, err := remoting.Decode(frame[4:])
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	e.trips = append(e.trips, roundTrip{req: req, resp: resp})
	e.mu.Unlock()
	return frame, nil
}

// routeQueries returns the 105 round trips for topic so far.
func (e *fakeEnvoy) routeQueries(topic string) []roundTrip {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []roundTrip
	for _, rt := range e.trips {
		if rt.req.Code == remoting.GetRouteInfoByTopic && rt.req.Ext("topic") == topic {
			out = append(out, rt)
		}
	}
	return out
}

// checkEchoes checks that every 105 for topic came with version and was answered with its opaque and code.
func (e *fakeEnvoy) checkEchoes(t *testing.T, topic string, version, code int32) {
	t.Helper()
	rts := e.routeQueries(topic)
	if len(rts) == 0 {
		t.Fatalf("fake Envoy saw no 105 for %s", topic)
	}
	for _, rt := range rts {
		wantVersion := int32(0)
		if code == remoting.Success {
			wantVersion = rt.req.Version
		}
		if rt.req.Version != version || rt.resp.Opaque != rt.req.Opaque || rt.resp.Code != code || rt.resp.Version != wantVersion {
			t.Errorf("105 for %s: request %v version %d, answer %v version %d; want request version %d, answer code %d with its opaque, version %d",
				topic, rt.req, rt.req.Version, rt.resp, rt.resp.Version, version, code, wantVersion)
		}
	}
}

// within runs f and fails the test if it does not return within d.
func within[T any](t *testing.T, d time.Duration, what string, f func() (T, error)) (T, error) {
	t.Helper()
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := f()
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-time.After(d):
		t.Fatalf("%s did not return within %v", what, d)
		panic("unreachable")
	}
}

// queueNames returns "broker/queue" for each queue, sorted.
func queueNames[Q any](queues []Q, name func(Q) (string, int)) []string {
	out := make([]string, 0, len(queues))
	for _, q := range queues {
		b, id := name(q)
		out = append(out, b+"/"+strconv.Itoa(id))
	}
	sort.Strings(out)
	return out
}

// envoyQueues is what a client must derive from fixtureRoute for producing or consuming: broker-a's master
// carries 4 queues, its slave's all-zero QueueData adds none (perm 0 is neither readable nor writable), broker-b 4.
var envoyQueues = []string{"broker-a/0", "broker-a/1", "broker-a/2", "broker-a/3",
	"broker-b/0", "broker-b/1", "broker-b/2", "broker-b/3"}

// TestEnvoyRouteAnswerParsesInGoClient serves Envoy's 105 answers (topic_route.cc TopicRouteData::encode, filled by
// active_message.cc ActiveMessage::onQueryTopicRoute; see the top of this file) to rocketmq-client-go as its
// NameServer. It parses the route: the stray keys are ignored (it reads queueDatas and brokerDatas by key), the
// quoted broker ids are read (its brokerAddrs parser strips quotes), and the slave's all-zero QueueData adds no
// queue. Envoy's SYSTEM_ERROR for an unknown topic is an error, but not ErrTopicNotExist, and a producer then
// also asks for the default topic TBW102 before its send fails. A cluster without hosts ({} body) fails to parse.
func TestEnvoyRouteAnswerParsesInGoClient(t *testing.T) {
	clientErrors(t)
	env := startFakeEnvoy(t)
	adm := startAdmin(t, env.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	defer cancel()
	mqName := func(mq *primitive.MessageQueue) (string, int) { return mq.BrokerName, mq.QueueId }

	t.Run("route", func(t *testing.T) {
		mqs, err := within(t, clientTimeout, "FetchPublishMessageQueues", func() ([]*primitive.MessageQueue, error) {
			return adm.FetchPublishMessageQueues(ctx, envoyTopic)
		})
		if err != nil {
			t.Fatalf("FetchPublishMessageQueues(%s): %v", envoyTopic, err)
		}
		if got := queueNames(mqs, mqName); !slices.Equal(got, envoyQueues) {
			t.Errorf("publish queues of %s from Envoy's answer = %v, want %v", envoyTopic, got, envoyQueues)
		}
		for _, mq := range mqs {
			if mq.Topic != envoyTopic {
				t.Errorf("queue %v has topic %q", mq, mq.Topic)
			}
		}
		clusters, err := within(t, clientTimeout, "FetchClusterList", func() ([]string, error) { return adm.FetchClusterList(envoyTopic) })
		if err != nil || !slices.Equal(clusters, []string{envoyCluster}) {
			t.Errorf("FetchClusterList(%s) = %v, %v; want [%s]", envoyTopic, clusters, err, envoyCluster)
		}
		env.checkEchoes(t, envoyTopic, remoting.VersionClientGo, remoting.Success)
	})

	t.Run("unknown topic", func(t *testing.T) {
		const topic = "interop-no-such-topic"
		mqs, err := within(t, clientTimeout, "FetchPublishMessageQueues", func() ([]*primitive.MessageQueue, error) {
			return adm.FetchPublishMessageQueues(ctx, topic)
		})
		if err == nil || errors.Is(err, rmqerrors.ErrTopicNotExist) || err.Error() != "CODE: 1  DESC: "+remarkNoCluster {
			t.Fatalf("FetchPublishMessageQueues(%s) = %v, %v; want the MQClientErr of Envoy's SYSTEM_ERROR (not ErrTopicNotExist)", topic, mqs, err)
		}
		env.checkEchoes(t, topic, remoting.VersionClientGo, remoting.SystemError)
	})

	t.Run("producer, unknown topic", func(t *testing.T) {
		const topic = "interop-no-such-topic-send"
		p := startProducer(t, env.Addr())
		res, err := within(t, clientTimeout, "SendSync", func() (*primitive.SendResult, error) {
			return p.SendSync(ctx, primitive.NewMessage(topic, []byte("to no route")))
		})
		if err == nil || !strings.Contains(err.Error(), "route info not found") {
			t.Fatalf("SendSync to %s = %v, %v; want a route-not-found error", topic, res, err)
		}
		env.checkEchoes(t, topic, remoting.VersionClientGo, remoting.SystemError)
		// A MQClientErr (not a RemotingErr) makes the producer try the topic-creation key's route as well.
		env.checkEchoes(t, "TBW102", remoting.VersionClientGo, remoting.SystemError)
	})

	t.Run("cluster without hosts", func(t *testing.T) {
		mqs, err := within(t, clientTimeout, "FetchPublishMessageQueues", func() ([]*primitive.MessageQueue, error) {
			return adm.FetchPublishMessageQueues(ctx, envoyEmptyTopic)
		})
		// The client decodes queueDatas, absent from {}, from the empty string: jsoniter fails.
		if err == nil {
			t.Fatalf("FetchPublishMessageQueues(%s) = %v, nil; want the client's decoding error for the body {}", envoyEmptyTopic, mqs)
		}
		t.Logf("rocketmq-client-go on Envoy's {} answer: %v", err)
		env.checkEchoes(t, envoyEmptyTopic, remoting.VersionClientGo, remoting.Success)
	})
}

// aliOnsQueue is a message queue as route.js --producer prints it.
type aliOnsQueue struct {
	BrokerName string `json:"brokerName"`
	QueueID    int    `json:"queueId"`
	Addr       string `json:"addr"` // picks only: the master address the producer would send to
}

// TestEnvoyRouteAnswerParsesInAliOns serves Envoy's 105 answers (topic_route.cc TopicRouteData::encode, filled by
// active_message.cc ActiveMessage::onQueryTopicRoute; see the top of this file) to ali-ons as its NameServer,
// through its MQClientAPI (route.js) and through a Producer's route resolution and queue selection (route.js
// --producer). ali-ons keeps the parsed JSON as it is, stray keys included, and reads only what it needs; the
// slave's all-zero QueueData adds no queue. Envoy's SYSTEM_ERROR for an unknown topic is an MQClientException
// with code 1 and Envoy's remark. A cluster without hosts ({} body) fails in ali-ons' sort of the absent lists.
func TestEnvoyRouteAnswerParsesInAliOns(t *testing.T) {
	node := requireAliOns(t)
	env := startFakeEnvoy(t)
	name := func(q aliOnsQueue) (string, int) { return q.BrokerName, q.QueueID }

	t.Run("route", func(t *testing.T) {
		out := runRouteScript(t, node, env.Addr(), envoyTopic)
		if out.code != 0 || out.res.Route == nil {
			t.Fatalf("route.js exited %d, output %s\nstderr:\n%s", out.code, out.stdout, out.stderr)
		}
		r := out.res.Route
		// One QueueData per host, sorted by broker name (a stable sort keeps the master's first).
		wantQueues := []string{"broker-a 4/4/6", "broker-a 0/0/0", "broker-b 4/4/6"}
		var gotQueues []string
		for _, q := range r.QueueDatas {
			gotQueues = append(gotQueues, fmt.Sprintf("%s %d/%d/%d", q.BrokerName, q.ReadQueueNums, q.WriteQueueNums, q.Perm))
		}
		if !slices.Equal(gotQueues, wantQueues) {
			t.Errorf("ali-ons parsed queue datas %v, want %v", gotQueues, wantQueues)
		}
		if len(r.BrokerDatas) != 2 ||
			!maps.Equal(r.BrokerDatas[0].BrokerAddrs, map[string]string{"0": envoyHosts[0].addr, "1": envoyHosts[1].addr}) ||
			!maps.Equal(r.BrokerDatas[1].BrokerAddrs, map[string]string{"0": envoyHosts[2].addr}) ||
			r.BrokerDatas[0].BrokerName != "broker-a" || r.BrokerDatas[1].BrokerName != "broker-b" ||
			r.BrokerDatas[0].Cluster != envoyCluster || r.BrokerDatas[1].Cluster != envoyCluster {
			t.Errorf("ali-ons parsed broker datas %+v", r.BrokerDatas)
		}
		// The stray keys stay in what ali-ons returns: it parses the body as it is.
		var raw struct {
			Route map[string]json.RawMessage `json:"route"`
		}
		if err := json.Unmarshal([]byte(out.line), &raw); err != nil {
			t.Fatal(err)
		}
		if got := slices.Sorted(maps.Keys(raw.Route)); !slices.Equal(got, []string{"brokerAddrs", "brokerDatas", "brokerName",
			"cluster", "perm", "queueDatas", "readQueueNums", "writeQueueNums"}) {
			t.Errorf("ali-ons' route has the keys %v", got)
		}
		env.checkEchoes(t, envoyTopic, aliOnsVersionRequest, remoting.Success)
	})

	t.Run("producer", func(t *testing.T) {
		out := runRouteScript(t, node, env.Addr(), envoyTopic, "--producer")
		if out.code != 0 || out.res.Producer == nil {
			t.Fatalf("route.js --producer exited %d, output %s\nstderr:\n%s", out.code, out.stdout, out.stderr)
		}
		p := out.res.Producer
		if got := queueNames(p.Publish, name); !slices.Equal(got, envoyQueues) {
			t.Errorf("ali-ons producer's queues %v, want %v", got, envoyQueues)
		}
		if got := queueNames(p.Subscribe, name); !slices.Equal(got, envoyQueues) {
			t.Errorf("ali-ons consumer queues from the same route %v, want %v", got, envoyQueues)
		}
		// Round robin over the 8 queues: 8 picks take each once, each sent to its group's master.
		if got := queueNames(p.Picks, name); !slices.Equal(got, envoyQueues) {
			t.Errorf("ali-ons producer picked %v, want each of %v once", got, envoyQueues)
		}
		masters := map[string]string{"broker-a": envoyHosts[0].addr, "broker-b": envoyHosts[2].addr}
		for _, q := range p.Picks {
			if q.Addr != masters[q.BrokerName] {
				t.Errorf("ali-ons would send %s/%d to %q, want its master %s", q.BrokerName, q.QueueID, q.Addr, masters[q.BrokerName])
			}
		}
	})

	for _, mode := range [][]string{nil, {"--producer"}} {
		t.Run(strings.TrimSpace("unknown topic "+strings.Join(mode, " ")), func(t *testing.T) {
			const topic = "interop-no-such-topic"
			out := runRouteScript(t, node, env.Addr(), topic, mode...)
			if out.code != 3 || out.res.Error == nil || out.res.Error.Code != int(remoting.SystemError) || out.res.Error.Message != remarkNoCluster {
				t.Fatalf("route.js %v exited %d with %s, want exit 3 and MQClientException code 1 %q\nstderr:\n%s",
					mode, out.code, out.stdout, remarkNoCluster, out.stderr)
			}
			env.checkEchoes(t, topic, aliOnsVersionRequest, remoting.SystemError)
		})
	}

	t.Run("cluster without hosts", func(t *testing.T) {
		out := runRouteScript(t, node, env.Addr(), envoyEmptyTopic)
		// getTopicRouteInfoFromNameServer sorts routerInfoData.queueDatas, absent from {}: a TypeError.
		if out.code != 1 || out.res.Error == nil || out.res.Error.Name != "TypeError" {
			t.Fatalf("route.js exited %d with %s, want exit 1 and a TypeError\nstderr:\n%s", out.code, out.stdout, out.stderr)
		}
		t.Logf("ali-ons on Envoy's {} answer: %s: %s", out.res.Error.Name, out.res.Error.Message)
		env.checkEchoes(t, envoyEmptyTopic, aliOnsVersionRequest, remoting.Success)
	})
}
