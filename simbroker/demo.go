package simbroker

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/rocketpilot/rocketpilot/remoting"
)

// The demo's brokers: their cluster and the topic every group holds.
const (
	DemoCluster = "DefaultCluster"
	DemoTopic   = "TopicTest"
)

// DemoOptions sizes the demo's brokers. Zero values take the defaults in parentheses.
type DemoOptions struct {
	// NameServers are where the brokers register.
	NameServers []string
	// Groups is how many broker groups (2): broker-a, with a slave, broker-b, then broker-c… masters only.
	Groups int
	// Queues, when set, is every demo topic's queue count on each group (the demo's own counts: 2 to 8).
	Queues int32
	// QueueCapacity is how many messages a queue keeps (100,000).
	QueueCapacity int
	// Host is the address the brokers listen on, each on a port of its own ("127.0.0.1").
	Host string
	// RegisterInterval, HeartbeatTimeout and DelayLevels are as in Options.
	RegisterInterval, HeartbeatTimeout time.Duration
	DelayLevels                        []time.Duration
	Logger                             *slog.Logger
}

// Demo is the demo's broker groups, started.
type Demo struct {
	// Brokers are every broker, masters and slaves, in group order.
	Brokers []*Broker
}

// DemoTopics returns the demo topic set for a number of broker groups, by group name: TopicTest on every group
// (4 queues), and 140 more topics in the demo's shapes, some read-only on one group:
//
//	demo-orders-001..040     every group, 8 queues; every 10th read-only on the second group
//	demo-payments-001..030   the first group, 4 queues; every 5th also read-only on the second
//	demo-inventory-001..030  the second group, 4 queues; every 3rd also on the first
//	demo-audit-001..020      every group, 2 queues; read-only on the last
//
// queues, when not 0, replaces every count.
func DemoTopics(groups int, queues int32) map[string][]remoting.TopicConfig {
	names := demoGroupNames(groups)
	out := map[string][]remoting.TopicConfig{}
	add := func(group int, topic string, n int32, perm int32) {
		if queues > 0 {
			n = queues
		}
		g := names[min(group, len(names)-1)]
		out[g] = append(out[g], remoting.TopicConfig{TopicName: topic, ReadQueueNums: n, WriteQueueNums: n, Perm: perm,
			TopicFilterType: remoting.TopicFilterSingleTag})
	}
	const rw, ro = remoting.PermRead | remoting.PermWrite, remoting.PermRead
	second := min(1, len(names)-1)
	for g := range names {
		add(g, DemoTopic, 4, rw)
	}
	for i := 1; i <= 40; i++ {
		for g := range names {
			perm := int32(rw)
			if g == second && second > 0 && i%10 == 0 {
				perm = ro
			}
			add(g, fmt.Sprintf("demo-orders-%03d", i), 8, perm)
		}
	}
	for i := 1; i <= 30; i++ {
		t := fmt.Sprintf("demo-payments-%03d", i)
		add(0, t, 4, rw)
		if i%5 == 0 && second > 0 {
			add(second, t, 4, ro)
		}
	}
	for i := 1; i <= 30; i++ {
		t := fmt.Sprintf("demo-inventory-%03d", i)
		add(second, t, 4, rw)
		if i%3 == 0 && second > 0 {
			add(0, t, 4, rw)
		}
	}
	for i := 1; i <= 20; i++ {
		for g := range names {
			perm := int32(rw)
			if g == len(names)-1 {
				perm = ro
			}
			add(g, fmt.Sprintf("demo-audit-%03d", i), 2, perm)
		}
	}
	return out
}

// DemoOrderedTopic is the demo topic an operator would declare ordered in the NameServer's KV.
const DemoOrderedTopic = "demo-orders-001"

// DemoOrderConf is DemoOrderedTopic's order configuration for a demo of this size, as the NameServer's KV holds it
// (namespace ORDER_TOPIC_CONFIG): "broker-a:8;broker-b:8", each group with its write queue count.
func DemoOrderConf(groups int, queues int32) string {
	topics := DemoTopics(groups, queues)
	var parts []string
	for _, g := range demoGroupNames(groups) {
		for _, c := range topics[g] {
			if c.TopicName == DemoOrderedTopic {
				parts = append(parts, fmt.Sprintf("%s:%d", g, c.WriteQueueNums))
			}
		}
	}
	return strings.Join(parts, ";")
}

func demoGroupNames(groups int) []string {
	names := make([]string, max(groups, 1))
	for i := range names {
		names[i] = fmt.Sprintf("broker-%c", 'a'+i%26)
		if i >= 26 {
			names[i] += fmt.Sprint(i / 26)
		}
	}
	return names
}

// StartDemo starts the demo's brokers, which register with the NameServers before it returns: broker-a (a master
// and a slave) and broker-b, or as many groups as asked, in DefaultCluster, holding DemoTopics.
func StartDemo(o DemoOptions) (*Demo, error) {
	if o.Groups <= 0 {
		o.Groups = 2
	}
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	topics := DemoTopics(o.Groups, o.Queues)
	d := &Demo{}
	for g, name := range demoGroupNames(o.Groups) {
		master := New(Options{Addr: o.Host + ":0", Cluster: DemoCluster, Name: name, Topics: topics[name],
			NameServers: o.NameServers, RegisterInterval: o.RegisterInterval, HeartbeatTimeout: o.HeartbeatTimeout,
			QueueCapacity: o.QueueCapacity, DelayLevels: o.DelayLevels, Logger: o.Logger})
		group := []*Broker{master}
		if g == 0 {
			group = append(group, New(Options{Addr: o.Host + ":0", Cluster: DemoCluster, Name: name, ID: 1, Master: master,
				NameServers: o.NameServers, RegisterInterval: o.RegisterInterval, HeartbeatTimeout: o.HeartbeatTimeout,
				Logger: o.Logger}))
		}
		for _, b := range group {
			if err := b.Start(); err != nil {
				d.Close()
				return nil, err
			}
			d.Brokers = append(d.Brokers, b)
		}
	}
	return d, nil
}

// Broker returns the demo's broker of a group and id, or nil.
func (d *Demo) Broker(name string, id int64) *Broker {
	for _, b := range d.Brokers {
		if b.Name() == name && b.ID() == id {
			return b
		}
	}
	return nil
}

// Close stops every broker.
func (d *Demo) Close() {
	for _, b := range d.Brokers {
		b.Close()
	}
}
