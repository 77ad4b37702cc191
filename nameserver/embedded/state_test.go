package embedded

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/rocketpilot/rocketpilot/remoting"
)

// topicsWithPrefix returns the sorted topics starting with prefix.
func topicsWithPrefix(s *NameServer, prefix string) []string {
	var out []string
	for _, t := range s.Topics() {
		if strings.HasPrefix(t, prefix) {
			out = append(out, t)
		}
	}
	return out
}

func brokerNames(qs []remoting.QueueData) []string {
	var out []string
	for _, q := range qs {
		out = append(out, q.BrokerName)
	}
	return out
}

func TestLoadDemoInvariants(t *testing.T) {
	s := demo(t)
	if n := s.TopicCount(); n < 100 || n != 121 {
		t.Fatalf("demo has %d topics", n)
	}
	ci := s.ClusterInfo()
	if !reflect.DeepEqual(ci.ClusterAddrTable, map[string][]string{
		DemoCluster: {"broker-a", "broker-b", "broker-c"}, DemoClusterB: {"broker-d"}}) {
		t.Fatalf("clusters %v", ci.ClusterAddrTable)
	}
	hosts, ports := map[string]bool{}, map[string]bool{}
	for name, bd := range ci.BrokerAddrTable {
		if len(bd.BrokerAddrs) != 2 || bd.BrokerAddrs[0] == "" || bd.BrokerAddrs[1] == "" {
			t.Fatalf("%s: want a master and a slave: %v", name, bd.BrokerAddrs)
		}
		for _, a := range bd.BrokerAddrs {
			host, port, ok := strings.Cut(a, ":")
			if !ok || !strings.HasPrefix(host, "127.0.0.") || hosts[host] || ports[port] {
				t.Fatalf("address %s not a distinct loopback host and port", a)
			}
			hosts[host], ports[port] = true, true
		}
	}

	r, ok := s.Route(DemoTopic)
	if !ok || !reflect.DeepEqual(r.QueueDatas, []remoting.QueueData{rw("broker-a", 4), rw("broker-b", 4)}) ||
		!reflect.DeepEqual(brokerNamesOf(r.BrokerDatas), []string{"broker-a", "broker-b"}) {
		t.Fatalf("TopicTest route %+v", r)
	}

	readOnly, shapes := 0, map[string]bool{}
	for _, topic := range s.Topics() {
		r, ok := s.Route(topic)
		if !ok || len(r.BrokerDatas) != len(r.QueueDatas) {
			t.Fatalf("%s: every group of a demo topic is registered: %+v", topic, r)
		}
		for _, q := range r.QueueDatas {
			if q.Perm == remoting.PermRead {
				readOnly++
			}
		}
		shapes[fmt.Sprint(r.QueueDatas)] = true
	}
	if readOnly == 0 || len(shapes) < 5 {
		t.Fatalf("demo lacks variety: %d read-only queue data, %d shapes", readOnly, len(shapes))
	}
	if len(shapes) != s.st.shapeCount() {
		t.Fatalf("%d distinct shapes but %d interned", len(shapes), s.st.shapeCount())
	}
	if !strings.HasPrefix(s.Topics()[1], "demo-") {
		t.Fatalf("topic names %v", s.Topics()[:3])
	}
}

func brokerNamesOf(bds []remoting.BrokerData) []string {
	var out []string
	for _, b := range bds {
		out = append(out, b.BrokerName)
	}
	return out
}

func TestExpireBroker(t *testing.T) {
	s := demo(t)
	before := s.TopicCount()
	s.ExpireBroker("broker-c")

	// payments topics live on broker-c alone, except every 5th also on broker-b.
	if got := topicsWithPrefix(s, "demo-payments-"); len(got) != 6 {
		t.Fatalf("payments left: %v", got)
	}
	r, ok := s.Route("demo-payments-005")
	if !ok || !reflect.DeepEqual(r.QueueDatas, []remoting.QueueData{ro("broker-b", 4)}) {
		t.Fatalf("demo-payments-005: %+v", r)
	}
	r, _ = s.Route("demo-audit-001")
	if !reflect.DeepEqual(brokerNames(r.QueueDatas), []string{"broker-a", "broker-b", "broker-d"}) {
		t.Fatalf("audit queue data still names broker-c: %+v", r.QueueDatas)
	}
	if s.TopicCount() != before-24 {
		t.Fatalf("topics %d, want %d", s.TopicCount(), before-24)
	}
	ci := s.ClusterInfo()
	if _, ok := ci.BrokerAddrTable["broker-c"]; ok || !reflect.DeepEqual(ci.ClusterAddrTable[DemoCluster], []string{"broker-a", "broker-b"}) {
		t.Fatalf("cluster info %+v", ci)
	}

	// Over the wire too.
	c := dial(t, s.Addr())
	wantCode(t, c.call(routeReq("demo-payments-001")), remoting.TopicNotExist, notExist("demo-payments-001"))

	// The last group of a cluster takes the cluster with it.
	s.ExpireBroker("broker-d")
	if _, ok := s.ClusterInfo().ClusterAddrTable[DemoClusterB]; ok {
		t.Fatal("ClusterB still listed")
	}
	if got := topicsWithPrefix(s, "demo-inventory-"); len(got) != 10 {
		t.Fatalf("inventory left: %v", got)
	}
	// Shapes no topic uses any more are released.
	distinct := map[string]bool{}
	for _, topic := range s.Topics() {
		r, _ := s.Route(topic)
		distinct[fmt.Sprint(r.QueueDatas)] = true
	}
	if s.st.shapeCount() != len(distinct) {
		t.Fatalf("%d shapes interned, %d in use", s.st.shapeCount(), len(distinct))
	}

	// Expiring a group that was never registered still removes its queue data; unknown names are harmless.
	s.SetTopic("ghost", rw("broker-x", 1))
	s.ExpireBroker("broker-x")
	s.ExpireBroker("nobody")
	if slices.Contains(s.Topics(), "ghost") {
		t.Fatal("ghost topic survived")
	}
	s.ExpireBroker("broker-a")
	s.ExpireBroker("broker-b")
	if s.TopicCount() != 0 || s.st.shapeCount() != 0 || len(s.ClusterInfo().BrokerAddrTable) != 0 {
		t.Fatalf("after expiring everything: %d topics, %d shapes", s.TopicCount(), s.st.shapeCount())
	}
}

func TestRemoveBrokerAddr(t *testing.T) {
	s := demo(t)
	c := dial(t, s.Addr())
	s.RemoveBrokerAddr("broker-a", 1)
	got, err := remoting.DecodeTopicRouteData(c.call(routeReq(DemoTopic)).Body)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.BrokerDatas[0].BrokerAddrs, map[int64]string{0: "127.0.0.1:10911"}) || len(got.QueueDatas) != 2 {
		t.Fatalf("after slave down: %+v", got)
	}
	before := s.TopicCount()
	s.RemoveBrokerAddr("broker-a", 7)  // unknown id
	s.RemoveBrokerAddr("broker-zz", 0) // unknown group
	s.RemoveBrokerAddr("broker-a", 1)  // already gone
	if s.TopicCount() != before {
		t.Fatal("ignored removals changed the topics")
	}
	// The master was the last address: the group expires.
	s.RemoveBrokerAddr("broker-a", 0)
	if _, ok := s.ClusterInfo().BrokerAddrTable["broker-a"]; ok {
		t.Fatal("broker-a still registered")
	}
	got, _ = remoting.DecodeTopicRouteData(c.call(routeReq(DemoTopic)).Body)
	if !reflect.DeepEqual(brokerNames(got.QueueDatas), []string{"broker-b"}) {
		t.Fatalf("TopicTest after broker-a expired: %+v", got)
	}
	// A slave-only group keeps serving.
	s.RemoveBrokerAddr("broker-b", 0)
	r, ok := s.Route(DemoTopic)
	if !ok || !reflect.DeepEqual(r.BrokerDatas[0].BrokerAddrs, map[int64]string{1: "127.0.0.4:11021"}) {
		t.Fatalf("slave-only route %+v", r)
	}
}

func TestSetPermCopiesOnWrite(t *testing.T) {
	s := start(t, Options{})
	s.RegisterBroker(Broker{Cluster: "c", Name: "b1", Addrs: map[int64]string{0: "127.0.0.1:1"}})
	s.RegisterBroker(Broker{Cluster: "c", Name: "b2", Addrs: map[int64]string{0: "127.0.0.1:2"}})
	for _, topic := range []string{"t1", "t2", "t3"} {
		s.SetTopic(topic, rw("b2", 4), rw("b1", 4)) // order given does not matter
	}
	if s.st.shapeCount() != 1 {
		t.Fatalf("%d shapes for one queue-data shape", s.st.shapeCount())
	}
	if err := s.SetPerm("t2", "b1", remoting.PermRead); err != nil {
		t.Fatal(err)
	}
	r1, _ := s.Route("t1")
	r2, _ := s.Route("t2")
	if r1.QueueDatas[0].Perm != 6 || r2.QueueDatas[0].Perm != remoting.PermRead || r2.QueueDatas[1].Perm != 6 {
		t.Fatalf("t1 %+v t2 %+v", r1.QueueDatas, r2.QueueDatas)
	}
	if s.st.shapeCount() != 2 {
		t.Fatalf("%d shapes", s.st.shapeCount())
	}
	// Back to the common shape: the copy is released.
	if err := s.SetPerm("t2", "b1", 6); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPerm("t2", "b1", 6); err != nil { // unchanged
		t.Fatal(err)
	}
	if s.st.shapeCount() != 1 {
		t.Fatalf("%d shapes after reverting", s.st.shapeCount())
	}
	if err := s.SetPerm("nope", "b1", 6); err == nil {
		t.Fatal("unknown topic accepted")
	}
	if err := s.SetPerm("t1", "b9", 6); err == nil {
		t.Fatal("unknown broker accepted")
	}
	// Over the wire.
	_ = s.SetPerm("t3", "b2", remoting.PermRead|remoting.PermWrite|remoting.PermInherit)
	got, _ := remoting.DecodeTopicRouteData(dial(t, s.Addr()).call(routeReq("t3")).Body)
	if got.QueueDatas[1].BrokerName != "b2" || got.QueueDatas[1].Perm != 7 {
		t.Fatalf("t3 %+v", got.QueueDatas)
	}
}

func TestSetTopicAndInterning(t *testing.T) {
	s := start(t, Options{})
	qa := []remoting.QueueData{rw("b1", 4), rw("b2", 8)}
	for i := range 1000 {
		s.SetTopic(fmt.Sprintf("t%04d", i), qa...)
	}
	if s.TopicCount() != 1000 || s.st.shapeCount() != 1 {
		t.Fatalf("%d topics, %d shapes", s.TopicCount(), s.st.shapeCount())
	}
	// The caller's slice is copied.
	qa[0].Perm = 2
	r, _ := s.st.topics["t0001"], 0
	if r.queues[0].Perm != 6 {
		t.Fatal("shape aliases the caller's slice")
	}
	// Duplicates: the last entry of a broker wins.
	s.SetTopic("dup", rw("b1", 1), rw("b1", 2))
	if q := s.st.topics["dup"].queues; len(q) != 1 || q[0].ReadQueueNums != 2 {
		t.Fatalf("dup %+v", q)
	}
	// No queue data removes the topic, as does RemoveTopic.
	s.SetTopic("dup")
	s.RemoveTopic("t0000")
	s.RemoveTopic("never")
	if s.TopicCount() != 999 || slices.Contains(s.Topics(), "dup") {
		t.Fatalf("%d topics", s.TopicCount())
	}
	for i := range 1000 {
		s.RemoveTopic(fmt.Sprintf("t%04d", i))
	}
	if s.TopicCount() != 0 || s.st.shapeCount() != 0 {
		t.Fatalf("%d topics, %d shapes after removing all", s.TopicCount(), s.st.shapeCount())
	}
	// Topics() hands out a copy.
	s.SetTopic("x", rw("b1", 1))
	list := s.Topics()
	list[0] = "mutated"
	if s.Topics()[0] != "x" {
		t.Fatal("Topics aliases the cache")
	}
}

func TestAccessorsReturnCopies(t *testing.T) {
	s := demo(t)
	r, _ := s.Route(DemoTopic)
	r.QueueDatas[0].Perm = 0
	r.BrokerDatas[0].BrokerAddrs[0] = "mutated"
	ci := s.ClusterInfo()
	ci.BrokerAddrTable["broker-a"].BrokerAddrs[0] = "mutated"
	again, _ := s.Route(DemoTopic)
	if again.QueueDatas[0].Perm != 6 || again.BrokerDatas[0].BrokerAddrs[0] != "127.0.0.1:10911" {
		t.Fatalf("state changed through a returned value: %+v", again)
	}
	// RegisterBroker copies the addresses.
	addrs := map[int64]string{0: "127.0.0.9:1"}
	s.RegisterBroker(Broker{Cluster: "c", Name: "n", Addrs: addrs})
	addrs[0] = "mutated"
	if s.ClusterInfo().BrokerAddrTable["n"].BrokerAddrs[0] != "127.0.0.9:1" {
		t.Fatal("RegisterBroker aliases the caller's map")
	}
	// Re-registering moves a group to another cluster.
	s.RegisterBroker(Broker{Cluster: "other", Name: "broker-d", Addrs: map[int64]string{0: "127.0.0.7:10911"}})
	ci = s.ClusterInfo()
	if _, ok := ci.ClusterAddrTable[DemoClusterB]; ok || !reflect.DeepEqual(ci.ClusterAddrTable["other"], []string{"broker-d"}) {
		t.Fatalf("clusters %v", ci.ClusterAddrTable)
	}
}

// TestConcurrentReadsAndWrites runs queries over the wire while the state changes; run with -race.
func TestConcurrentReadsAndWrites(t *testing.T) {
	s := demo(t)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := dial(t, s.Addr())
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				var resp *remoting.Command
				switch (g + i) % 4 {
				case 0:
					resp = c.call(routeReq(fmt.Sprintf("demo-orders-%03d", 1+i%40)))
				case 1:
					resp = c.call(req(remoting.GetAllTopicListFromNameServer, nil))
				case 2:
					resp = c.call(req(remoting.GetTopicsByCluster, map[string]string{"cluster": DemoCluster}))
				default:
					resp = c.call(req(remoting.GetBrokerClusterInfo, nil))
				}
				if resp.Code != remoting.Success && resp.Code != remoting.TopicNotExist {
					t.Errorf("answer %v", resp)
					return
				}
			}
		}()
	}
	for i := range 200 {
		topic := fmt.Sprintf("demo-orders-%03d", 1+i%40)
		_ = s.SetPerm(topic, "broker-b", int32(4+2*(i%2)))
		s.SetTopic(fmt.Sprintf("churn-%d", i%7), rw("broker-a", int32(1+i%3)))
		s.RemoveTopic(fmt.Sprintf("churn-%d", (i+3)%7))
		if i%50 == 0 {
			s.RemoveBrokerAddr("broker-b", 1)
			s.RegisterBroker(DemoBrokers()[1])
		}
		_ = s.Topics()
	}
	close(stop)
	wg.Wait()
}
