package embedded

import (
	"fmt"

	"github.com/rocketpilot/rocketpilot/remoting"
)

// Demo data set: what LoadDemo installs.
const (
	DemoCluster  = "DefaultCluster"
	DemoClusterB = "ClusterB"
	// DemoTopic is served by exactly broker-a and broker-b, read-write, 4 queues each.
	DemoTopic = "TopicTest"
)

// demoGroups are the demo broker groups: name, cluster, zone.
var demoGroups = [...]struct{ name, cluster, zone string }{
	{"broker-a", DemoCluster, "zone-1"},
	{"broker-b", DemoCluster, "zone-1"},
	{"broker-c", DemoCluster, "zone-2"},
	{"broker-d", DemoClusterB, "zone-3"},
}

// DemoBrokers returns the demo broker groups: in DefaultCluster broker-a, broker-b and broker-c, in ClusterB
// broker-d, each with a master (id 0) and a slave (id 1). Every broker has its own loopback address and port.
func DemoBrokers() []Broker {
	out := make([]Broker, 0, len(demoGroups))
	for g, d := range demoGroups {
		addrs := make(map[int64]string, 2)
		for id := range int64(2) {
			addrs[id] = fmt.Sprintf("127.0.0.%d:%d", 2*g+int(id)+1, 10911+100*g+10*int(id))
		}
		out = append(out, Broker{Cluster: d.cluster, Name: d.name, Zone: d.zone, Addrs: addrs})
	}
	return out
}

func rw(broker string, queues int32) remoting.QueueData {
	return remoting.QueueData{BrokerName: broker, ReadQueueNums: queues, WriteQueueNums: queues,
		Perm: remoting.PermRead | remoting.PermWrite}
}

func ro(broker string, queues int32) remoting.QueueData {
	q := rw(broker, queues)
	q.Perm = remoting.PermRead
	return q
}

// LoadDemo installs the demo data set: the DemoBrokers groups; TopicTest on broker-a and broker-b (perm 6, 4
// read and 4 write queues each); 120 more topics over a handful of shapes, some of them read-only (perm 4) on one
// group:
//
//	demo-orders-001..040     broker-a, broker-b, 8 queues each; every 10th read-only on broker-b
//	demo-payments-001..030   broker-c, 4 queues; every 5th also read-only on broker-b
//	demo-inventory-001..030  broker-d (ClusterB), 4 queues; every 3rd also on broker-a
//	demo-audit-001..020      all four groups, 2 queues; read-only on broker-c
//
// and in KV namespace ORDER_TOPIC_CONFIG the order configuration of demo-orders-001.
func LoadDemo(s *NameServer) {
	for _, b := range DemoBrokers() {
		s.RegisterBroker(b)
	}
	s.SetTopic(DemoTopic, rw("broker-a", 4), rw("broker-b", 4))
	for i := 1; i <= 40; i++ {
		b := rw("broker-b", 8)
		if i%10 == 0 {
			b = ro("broker-b", 8)
		}
		s.SetTopic(fmt.Sprintf("demo-orders-%03d", i), rw("broker-a", 8), b)
	}
	for i := 1; i <= 30; i++ {
		q := []remoting.QueueData{rw("broker-c", 4)}
		if i%5 == 0 {
			q = append(q, ro("broker-b", 4))
		}
		s.SetTopic(fmt.Sprintf("demo-payments-%03d", i), q...)
	}
	for i := 1; i <= 30; i++ {
		q := []remoting.QueueData{rw("broker-d", 4)}
		if i%3 == 0 {
			q = append(q, rw("broker-a", 4))
		}
		s.SetTopic(fmt.Sprintf("demo-inventory-%03d", i), q...)
	}
	for i := 1; i <= 20; i++ {
		s.SetTopic(fmt.Sprintf("demo-audit-%03d", i), rw("broker-a", 2), rw("broker-b", 2), ro("broker-c", 2), rw("broker-d", 2))
	}
	s.SetKV(NamespaceOrderTopicConfig, "demo-orders-001", "broker-a:8;broker-b:8")
}
