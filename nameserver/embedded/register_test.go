package embedded

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rocketpilot/rocketpilot/remoting"
)

func ptr[T any](v T) *T { return &v }

// brk is one broker as it registers itself.
type brk struct {
	cluster, name, addr, zone string
	id                        int64
}

func (b brk) header() remoting.RegisterBrokerHeader {
	host, _, _ := strings.Cut(b.addr, ":")
	return remoting.RegisterBrokerHeader{BrokerName: b.name, BrokerAddr: b.addr, ClusterName: b.cluster,
		HAServerAddr: host + ":10912", BrokerID: b.id, EnableActingMaster: ptr(false), ZoneName: b.zone}
}

func topicConf(name string, queues, perm int32) remoting.TopicConfig {
	tc := remoting.NewTopicConfig(name)
	tc.ReadQueueNums, tc.WriteQueueNums, tc.Perm = queues, queues, perm
	return tc
}

// registerReq builds a 103 with the given topics and, as every Java broker has, the topic named after its group
// (1 queue, perm 7). A broker's first registration with a single topic would be refused (see
// TestRegisterBrokerRefusals).
func registerReq(h remoting.RegisterBrokerHeader, version int64, topics ...remoting.TopicConfig) *remoting.Command {
	body := &remoting.RegisterBrokerBody{TopicConfigTable: map[string]remoting.TopicConfig{h.BrokerName: selfTopic(h.BrokerName)},
		DataVersion: remoting.DataVersion{Counter: version, Timestamp: 1_700_000_000_000 + version}}
	for _, tc := range topics {
		body.TopicConfigTable[tc.TopicName] = tc
	}
	return remoting.NewRegisterBrokerRequest(h, body)
}

// register sends a 103 and checks that it succeeded.
func register(t testing.TB, c *client, h remoting.RegisterBrokerHeader, version int64, topics ...remoting.TopicConfig) *remoting.Command {
	t.Helper()
	resp := c.call(registerReq(h, version, topics...))
	wantCode(t, resp, remoting.Success, "")
	return resp
}

func selfTopic(name string) remoting.TopicConfig { return topicConf(name, 1, 7) }

func selfQueue(name string) remoting.QueueData {
	return remoting.QueueData{BrokerName: name, ReadQueueNums: 1, WriteQueueNums: 1, Perm: 7}
}

var (
	masterA = brk{cluster: "DefaultCluster", name: "broker-a", addr: "10.0.0.1:10911", zone: "z1", id: 0}
	slaveA  = brk{cluster: "DefaultCluster", name: "broker-a", addr: "10.0.0.2:10911", zone: "z1", id: 1}
	masterB = brk{cluster: "ClusterB", name: "broker-b", addr: "10.0.0.3:10911", id: 0}
)

// answers returns the bodies of the read requests a route watcher sends, for comparing two servers.
func answers(t testing.TB, c *client, topics ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, topic := range topics {
		for _, version := range []int32{remoting.VersionClientGo, remoting.VersionStandardJSON} {
			r := routeReq(topic)
			r.Version = version
			resp := c.call(r)
			out["105 "+topic+" "+itoa(version)] = itoa(resp.Code) + " " + resp.Remark + " " + string(resp.Body)
		}
	}
	out["106"] = string(c.call(req(remoting.GetBrokerClusterInfo, nil)).Body)
	out["206"] = string(c.call(req(remoting.GetAllTopicListFromNameServer, nil)).Body)
	for _, cluster := range []string{"DefaultCluster", "ClusterB"} {
		out["224 "+cluster] = string(c.call(req(remoting.GetTopicsByCluster, map[string]string{"cluster": cluster})).Body)
	}
	return out
}

func sameAnswers(t testing.TB, got, want map[string]string) {
	t.Helper()
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s:\n got %s\nwant %s", k, got[k], w)
		}
	}
}

func TestRegisterBrokers(t *testing.T) {
	s := start(t, Options{})
	s.SetKV(NamespaceOrderTopicConfig, "orders", "broker-a:4")
	ca, cs, cb := dial(t, s.Addr()), dial(t, s.Addr()), dial(t, s.Addr())

	resp := register(t, ca, masterA.header(), 1, topicConf("T1", 4, 6), topicConf("orders", 4, 6), topicConf("ro", 2, 4))
	if len(resp.ExtFields) != 0 {
		t.Fatalf("a master gets no master address: %v", resp.ExtFields)
	}
	// returnOrderTopicConfigToBroker: the whole ORDER_TOPIC_CONFIG namespace.
	if string(resp.Body) != `{"table":{"orders":"broker-a:4"}}` {
		t.Fatalf("body %s", resp.Body)
	}
	// A slave does not change queue data (Java: only the master, or a 5.x prime slave, does) and learns its
	// master's addresses.
	resp = register(t, cs, slaveA.header(), 1, topicConf("T1", 1, 2), topicConf("slave-only", 1, 6))
	if want := map[string]string{"masterAddr": masterA.addr, "haServerAddr": "10.0.0.1:10912"}; !equalMaps(resp.ExtFields, want) {
		t.Fatalf("slave response header %v", resp.ExtFields)
	}
	sys := topicConf("T1", 2, 4)
	sys.TopicSysFlag = 1
	register(t, cb, masterB.header(), 7, sys, topicConf("T3", 8, 6))

	// The same state set programmatically answers byte for byte the same.
	want := start(t, Options{})
	want.RegisterBroker(Broker{Cluster: "DefaultCluster", Name: "broker-a", Zone: "z1", Addrs: map[int64]string{0: masterA.addr, 1: slaveA.addr}})
	want.RegisterBroker(Broker{Cluster: "ClusterB", Name: "broker-b", Addrs: map[int64]string{0: masterB.addr}})
	want.SetTopic("T1", rw("broker-a", 4), remoting.QueueData{BrokerName: "broker-b", ReadQueueNums: 2, WriteQueueNums: 2, Perm: 4, TopicSysFlag: 1})
	want.SetTopic("orders", rw("broker-a", 4))
	want.SetTopic("ro", ro("broker-a", 2))
	want.SetTopic("T3", rw("broker-b", 8))
	want.SetTopic("broker-a", selfQueue("broker-a"))
	want.SetTopic("broker-b", selfQueue("broker-b"))
	topics := []string{"T1", "orders", "ro", "T3", "slave-only", "broker-a", "broker-b"}
	sameAnswers(t, answers(t, dial(t, s.Addr()), topics...), answers(t, dial(t, want.Addr()), topics...))
	if s.LiveBrokers() != 3 {
		t.Fatalf("live brokers %d", s.LiveBrokers())
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func clusterInfo(t testing.TB, s *NameServer) map[string]map[int64]string {
	t.Helper()
	out := map[string]map[int64]string{}
	for name, bd := range s.ClusterInfo().BrokerAddrTable {
		out[name] = bd.BrokerAddrs
	}
	return out
}

func brokerAddrs(s *NameServer, name string) map[int64]string {
	bd, ok := s.ClusterInfo().BrokerAddrTable[name]
	if !ok {
		return nil
	}
	return bd.BrokerAddrs
}

func TestClosedBrokerConnectionRemovesBroker(t *testing.T) {
	s := start(t, Options{})
	ca, cs, cb := dial(t, s.Addr()), dial(t, s.Addr()), dial(t, s.Addr())
	register(t, ca, masterA.header(), 1, topicConf("T1", 4, 6), topicConf("only-a", 4, 6))
	register(t, cs, slaveA.header(), 1, topicConf("T1", 4, 6))
	register(t, cb, masterB.header(), 1, topicConf("T1", 4, 6))
	reader := dial(t, s.Addr()) // a client connection: closing it removes nothing

	_ = cs.nc.Close()
	eventually(t, "slave removed", func() bool { return len(brokerAddrs(s, "broker-a")) == 1 })
	if r, _ := s.Route("T1"); len(r.QueueDatas) != 2 {
		t.Fatalf("the slave took queue data with it: %+v", r)
	}
	_ = ca.nc.Close()
	eventually(t, "group removed", func() bool { return brokerAddrs(s, "broker-a") == nil })
	// The group's queue data went with its last broker: only-a has no route and is no longer listed.
	wantCode(t, reader.call(routeReq("only-a")), remoting.TopicNotExist, notExist("only-a"))
	if r, _ := s.Route("T1"); len(r.QueueDatas) != 1 || r.QueueDatas[0].BrokerName != "broker-b" {
		t.Fatalf("T1 %+v", r)
	}
	if slices.Contains(s.Topics(), "only-a") || s.LiveBrokers() != 1 {
		t.Fatalf("topics %v, live %d", s.Topics(), s.LiveBrokers())
	}
	// The remaining broker's connection still works.
	register(t, cb, masterB.header(), 1, topicConf("T1", 4, 6))
}

func TestBrokerExpiry(t *testing.T) {
	s := start(t, Options{ScanInterval: 10 * time.Millisecond, BrokerTimeout: 250 * time.Millisecond})
	ca, cb := dial(t, s.Addr()), dial(t, s.Addr())
	ha := masterA.header()
	ha.HeartbeatTimeoutMillis = ptr(int64(400))
	// Re-registering keeps a broker alive past its timeout.
	for range 6 {
		register(t, ca, ha, 1, topicConf("T1", 4, 6))
		register(t, cb, masterB.header(), 1, topicConf("T2", 4, 6))
		time.Sleep(100 * time.Millisecond)
	}
	if len(clusterInfo(t, s)) != 2 {
		t.Fatalf("expired while re-registering: %v", clusterInfo(t, s))
	}
	// broker-b (no header timeout: Options.BrokerTimeout) and broker-a (400 ms) stop re-registering; both keep
	// their connections, which the server closes when they expire (RemotingHelper.closeChannel).
	start := time.Now()
	eventually(t, "broker-b expired", func() bool { return brokerAddrs(s, "broker-b") == nil })
	eventually(t, "broker-a expired", func() bool { return brokerAddrs(s, "broker-a") == nil })
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Fatalf("broker-a expired after %v, before its 400 ms", d)
	}
	ca.expectClosed()
	cb.expectClosed()
	if s.TopicCount() != 0 || s.LiveBrokers() != 0 {
		t.Fatalf("topics %v, live %d", s.Topics(), s.LiveBrokers())
	}

	// Registering again brings it back, queue data included.
	c := dial(t, s.Addr())
	register(t, c, masterA.header(), 1, topicConf("T1", 4, 6))
	if r, ok := s.Route("T1"); !ok || r.BrokerDatas[0].BrokerAddrs[0] != masterA.addr {
		t.Fatalf("T1 %+v", r)
	}
	// 104 removes it at once; the connection stays open and usable.
	u := remoting.UnregisterBrokerHeader{BrokerName: masterA.name, BrokerAddr: masterA.addr, ClusterName: masterA.cluster}
	wantCode(t, c.call(remoting.NewUnregisterBrokerRequest(u)), remoting.Success, "")
	if _, ok := s.Route("T1"); ok || len(clusterInfo(t, s)) != 0 || s.LiveBrokers() != 0 {
		t.Fatalf("still there after 104: %v", clusterInfo(t, s))
	}
	wantCode(t, c.call(routeReq("T1")), remoting.TopicNotExist, notExist("T1"))
	// Unregistering what is not registered is fine.
	wantCode(t, c.call(remoting.NewUnregisterBrokerRequest(u)), remoting.Success, "")
}

func TestReRegistrationUpdatesQueueData(t *testing.T) {
	for _, deleteTopics := range []bool{false, true} {
		t.Run(map[bool]string{false: "default", true: "deleteTopicWithBrokerRegistration"}[deleteTopics], func(t *testing.T) {
			s := start(t, Options{DeleteTopicWithBrokerRegistration: deleteTopics})
			c := dial(t, s.Addr())
			register(t, c, masterA.header(), 1, topicConf("T1", 4, 6), topicConf("T2", 4, 6))
			s.SetTopic("T2", rw("broker-a", 4), rw("broker-x", 4)) // T2 is also served elsewhere
			s.RegisterBroker(Broker{Cluster: "DefaultCluster", Name: "broker-x", Addrs: map[int64]string{0: "10.0.0.9:10911"}})

			// A new data version: T1's queue data changes. T2 is not listed any more: by default Java keeps the
			// group's queue data of topics a broker stops listing (until the group leaves); with
			// deleteTopicWithBrokerRegistration it removes it.
			register(t, c, masterA.header(), 2, topicConf("T1", 8, 4))
			if r, _ := s.Route("T1"); !slices.Equal(r.QueueDatas, []remoting.QueueData{ro("broker-a", 8)}) {
				t.Fatalf("T1 %+v", r.QueueDatas)
			}
			wantT2 := []remoting.QueueData{rw("broker-a", 4), rw("broker-x", 4)}
			if deleteTopics {
				wantT2 = wantT2[1:]
			}
			if r, _ := s.Route("T2"); !slices.Equal(r.QueueDatas, wantT2) {
				t.Fatalf("T2 %+v", r.QueueDatas)
			}

			// The same data version: topics that already have the group's queue data are not updated
			// (isTopicConfigChanged), new ones are.
			register(t, c, masterA.header(), 2, topicConf("T1", 16, 6), topicConf("T3", 2, 6))
			if r, _ := s.Route("T1"); !slices.Equal(r.QueueDatas, []remoting.QueueData{ro("broker-a", 8)}) {
				t.Fatalf("T1 changed without a new data version: %+v", r.QueueDatas)
			}
			if r, ok := s.Route("T3"); !ok || !slices.Equal(r.QueueDatas, []remoting.QueueData{rw("broker-a", 2)}) {
				t.Fatalf("T3 %+v", r.QueueDatas)
			}
		})
	}
}

func TestActingMaster(t *testing.T) {
	s := start(t, Options{})
	cm, cs := dial(t, s.Addr()), dial(t, s.Addr())
	master, slave := masterA.header(), slaveA.header()
	master.EnableActingMaster, slave.EnableActingMaster = ptr(true), ptr(true)
	// A 5.x slave registering without its master is the prime slave: it files queue data, read-only.
	register(t, cs, slave, 1, topicConf("T1", 4, 6))
	if r, _ := s.Route("T1"); !slices.Equal(r.QueueDatas, []remoting.QueueData{ro("broker-a", 4)}) || !r.BrokerDatas[0].EnableActingMaster {
		t.Fatalf("T1 %+v", r)
	}
	register(t, cm, master, 1, topicConf("T1", 4, 6))
	if r, _ := s.Route("T1"); !slices.Equal(r.QueueDatas, []remoting.QueueData{rw("broker-a", 4)}) {
		t.Fatalf("T1 %+v", r)
	}
	// The master leaves: the group keeps its slave and loses the write perm.
	_ = cm.nc.Close()
	eventually(t, "master removed", func() bool { return len(brokerAddrs(s, "broker-a")) == 1 })
	if r, _ := s.Route("T1"); !slices.Equal(r.QueueDatas, []remoting.QueueData{ro("broker-a", 4)}) {
		t.Fatalf("T1 %+v", r)
	}
}

func TestRegisterBrokerRefusals(t *testing.T) {
	s := start(t, Options{})
	c := dial(t, s.Addr())
	usable := func() {
		t.Helper()
		wantCode(t, c.call(req(remoting.GetBrokerClusterInfo, nil)), remoting.Success, "")
	}
	const rce = "org.apache.rocketmq.remoting.exception.RemotingCommandException: "

	r := registerReq(masterA.header(), 1, topicConf("T1", 4, 6))
	delete(r.ExtFields, "brokerAddr")
	wantCode(t, c.call(r), remoting.SystemError, rce+"the custom field <brokerAddr> is null")
	usable()

	r = registerReq(masterA.header(), 1, topicConf("T1", 4, 6))
	r.ExtFields["brokerId"] = "master"
	wantCode(t, c.call(r), remoting.SystemError, rce+`the custom field <brokerId> has a malformed value "master"`)

	r = registerReq(masterA.header(), 1)
	r.Body = []byte(`{"topicConfigSerializeWrapper":[`)
	r.ExtFields["bodyCrc32"] = itoa(remoting.BodyCRC32(r.Body))
	resp := c.call(r)
	if resp.Code != remoting.SystemError || !strings.HasPrefix(resp.Remark, rce+"Failed to decode RegisterBrokerBody: ") {
		t.Fatalf("bad JSON: %v", resp)
	}
	usable()

	// The NameServer checks the CRC unless it is 0.
	r = registerReq(masterA.header(), 1, topicConf("T1", 4, 6))
	r.Body = bytes.Replace(r.Body, []byte(`"readQueueNums":4`), []byte(`"readQueueNums":5`), 1)
	wantCode(t, c.call(r), remoting.SystemError, "crc32 not match")
	r.ExtFields["bodyCrc32"] = "0"
	wantCode(t, c.call(r), remoting.Success, "")
	if r, _ := s.Route("T1"); r.QueueDatas[0].ReadQueueNums != 5 {
		t.Fatalf("T1 %+v", r)
	}

	r = registerReq(slaveA.header(), 1, topicConf("T1", 4, 6))
	r.ExtFields["compressed"] = "true"
	resp = c.call(r)
	if resp.Code != remoting.SystemError || !strings.Contains(resp.Remark, "compressed") {
		t.Fatalf("compressed: %v", resp)
	}

	// A first registration with exactly one topic is refused (Java takes it for a single-topic registration of
	// a broker not registered yet).
	single := &remoting.RegisterBrokerBody{TopicConfigTable: map[string]remoting.TopicConfig{"T1": topicConf("T1", 4, 6)}}
	wantCode(t, c.call(remoting.NewRegisterBrokerRequest(slaveA.header(), single)), remoting.SystemError, "register broker failed")

	u := remoting.NewUnregisterBrokerRequest(remoting.UnregisterBrokerHeader{BrokerName: "broker-a", BrokerAddr: masterA.addr})
	delete(u.ExtFields, "clusterName")
	wantCode(t, c.call(u), remoting.SystemError, rce+"the custom field <clusterName> is null")
	usable()
	if len(brokerAddrs(s, "broker-a")) != 1 {
		t.Fatalf("refused requests changed the brokers: %v", clusterInfo(t, s))
	}
}

func TestRegisterBinaryHeaderAndOldBody(t *testing.T) {
	s := start(t, Options{HeaderType: remoting.SerializeRocketMQ})
	c := dial(t, s.Addr())
	// A broker older than V3_0_11 sends the topic config wrapper alone, in a binary header here.
	r := registerReq(masterA.header(), 1)
	r.HeaderType = remoting.SerializeRocketMQ
	r.Version = remoting.VersionRegisterBrokerBody - 1
	r.Body = []byte(`{"topicConfigTable":{"old":{"topicName":"old","readQueueNums":3,"writeQueueNums":3},` +
		`"broker-a":{"topicName":"broker-a"}},"dataVersion":{"counter":1}}`)
	r.ExtFields["bodyCrc32"] = "0"
	resp := c.call(r)
	wantCode(t, resp, remoting.Success, "")
	if resp.HeaderType != remoting.SerializeRocketMQ || resp.Body != nil {
		t.Fatalf("response %v", resp)
	}
	if route, ok := s.Route("old"); !ok || !slices.Equal(route.QueueDatas, []remoting.QueueData{rw("broker-a", 3)}) {
		t.Fatalf("old %+v", route)
	}
}

func TestFilterServers(t *testing.T) {
	s := start(t, Options{})
	c := dial(t, s.Addr())
	body := &remoting.RegisterBrokerBody{TopicConfigTable: map[string]remoting.TopicConfig{"T1": topicConf("T1", 4, 6), "T2": topicConf("T2", 4, 6)},
		FilterServerList: []string{"10.0.0.1:30000"}}
	wantCode(t, c.call(remoting.NewRegisterBrokerRequest(masterA.header(), body)), remoting.Success, "")
	resp := c.call(routeReq("T1"))
	if !bytes.Contains(resp.Body, []byte(`"filterServerTable":{"10.0.0.1:10911":["10.0.0.1:30000"]}`)) {
		t.Fatalf("route %s", resp.Body)
	}
	if r, _ := s.Route("T1"); !slices.Equal(r.FilterServerTable[masterA.addr], body.FilterServerList) {
		t.Fatalf("Route %+v", r)
	}
	body.FilterServerList = nil
	wantCode(t, c.call(remoting.NewRegisterBrokerRequest(masterA.header(), body)), remoting.Success, "")
	if resp := c.call(routeReq("T1")); !bytes.Contains(resp.Body, []byte(`"filterServerTable":{}`)) {
		t.Fatalf("route %s", resp.Body)
	}
}
