package main

import (
	"context"
	"fmt"
	"log"
	"slices"
	"sync"
	"time"

	"github.com/rocketpilot/rocketpilot/routing"
	"github.com/rocketpilot/rocketpilot/xds/translate"
)

// envoyScopeShare is how many simulated Envoys share a scope (the replicas of one workload): a change to one of
// the scope's topics reaches each of them.
const envoyScopeShare = 10

// envoyChange is one change of a topic's route: at t0 the topic moved to cluster, which every Envoy of the scope
// has to ACK in its filter config.
type envoyChange struct {
	topic, cluster string
	scope          int
	t0             time.Time
}

// envoyScenario opens k simulated Envoys (one delta ADS stream each, scoped by node metadata to cfg.topicsPerStream
// topics, envoyScopeShare Envoys a scope) and measures change → ECDS ACK: from the table change to the moment each
// Envoy of the scope has ACKed the filter config that routes the topic to its new cluster. Two kinds of change,
// cfg.envoyChanges of each at cfg.churnRate per second: to a broker set the Envoys hold (the cluster of another
// topic of their scope), and to a broker set new to them (its cluster and endpoints come first).
func envoyScenario(cfg config, k int) []Figure {
	ns, cp, _ := startStreamStack(cfg, k)
	defer ns.Close()
	defer cp.stop()

	scopes := (k + envoyScopeShare - 1) / envoyScopeShare
	scopeTopics := make([][]string, scopes)
	for g := range scopeTopics {
		for j := range cfg.topicsPerStream {
			scopeTopics[g] = append(scopeTopics[g], topicName(g*cfg.topicsPerStream+j))
		}
	}
	envoys := newEnvoys(cp.addr, k, func(i int) []string { return scopeTopics[i/envoyScopeShare] })
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	startSims(ctx, &wg, envoys, "Envoy streams")

	clusterOf := func(topic string) (string, []routing.Member) {
		t := cp.table.Topic(topic)
		return translate.ClusterName(t.BrokerSet), slices.Clone(t.BrokerSet.Members)
	}
	// Each scope's first topic moves; its second and third topics hold two other broker sets, which the known
	// changes flip it between. The new changes give it its first broker set plus a group no topic ever had.
	// Changes replace what the NameServer's source reported (another source's groups would be merged in).
	source := cp.table.TopicSources(scopeTopics[0][0])[0].Source
	first := make([][]routing.Member, scopes)
	for g, topics := range scopeTopics {
		c0, members := clusterOf(topics[0])
		c1, _ := clusterOf(topics[1])
		c2, _ := clusterOf(topics[2])
		if c0 == c1 || c1 == c2 || c0 == c2 {
			log.Fatalf("scope %d: its first three topics share broker sets", g)
		}
		first[g] = members
	}
	known := func(n int) (int, []routing.Member, string) {
		g := n % scopes
		cluster, members := clusterOf(scopeTopics[g][1+(n/scopes)%2])
		return g, members, cluster
	}
	fresh := func(n int) (int, []routing.Member, string) {
		g := n % scopes
		return g, append(slices.Clone(first[g]), routing.Member{Cluster: "cluster-1", BrokerName: fmt.Sprintf("broker-new-%d", n),
			Perm: 6, ReadQueueNums: 8, WriteQueueNums: 8,
			Addrs: []routing.BrokerAddr{{ID: 0, Addr: fmt.Sprintf("10.8.%d.%d:10911", n/250, n%250)}}}), ""
	}
	kk := human(k)
	goal := ""
	if k == cfg.streams[len(cfg.streams)-1] {
		goal = "≤ 1 s" // the run's largest stream count is the claim
	}
	var figs []Figure
	for _, kind := range []struct {
		name   string
		change func(n int) (scope int, members []routing.Member, cluster string) // cluster: the one expected, if known
	}{{"known cluster", known}, {"new cluster", fresh}} {
		changes := make([]envoyChange, 0, cfg.envoyChanges)
		received, bytes := envoyTraffic(envoys)
		tick := time.NewTicker(time.Duration(float64(time.Second) / cfg.churnRate))
		for n := range cfg.envoyChanges {
			<-tick.C
			g, members, want := kind.change(n)
			topic := scopeTopics[g][0]
			t0 := time.Now()
			cp.table.Apply(source, routing.Update{Topic: topic, Route: &routing.Route{Members: members}})
			cluster, _ := clusterOf(topic)
			if want != "" && cluster != want {
				log.Fatalf("%s moved to %s, not to the known %s", topic, cluster, want)
			}
			changes = append(changes, envoyChange{topic: topic, cluster: cluster, scope: g, t0: t0})
		}
		tick.Stop()
		lat, missing := envoyLatencies(envoys, changes, 30*time.Second)
		p50, p99 := pct(lat, 0.5), pct(lat, 0.99)
		log.Printf("envoy, %s: %d changes, %d ECDS ACKs (%d missing), p50 %v, p99 %v", kind.name, len(changes), len(lat), missing, p50, p99)
		received2, bytes2 := envoyTraffic(envoys)
		perChange := func(typeURL string) float64 {
			return float64(received2[typeURL]-received[typeURL]) / float64(len(changes))
		}
		log.Printf("envoy, %s: responses per change (to the %d Envoys of a scope): CDS %.1f, EDS %.1f, LDS %.1f, ECDS %.1f; %.0f B of protobuf",
			kind.name, envoyScopeShare, perChange(translate.ClusterType), perChange(translate.EndpointType), perChange(translate.ListenerType),
			perChange(translate.ExtensionType), float64(bytes2-bytes)/float64(len(changes)))
		figs = append(figs,
			Figure{Name: fmt.Sprintf("Envoy streams: change → ECDS ACK p50, %s, %s streams", kind.name, kk), Value: ms(p50), Unit: "ms", lowerIsBetter: true},
			Figure{Name: fmt.Sprintf("Envoy streams: change → ECDS ACK p99, %s, %s streams", kind.name, kk), Value: ms(p99), Unit: "ms", Goal: goal, lowerIsBetter: true},
			Figure{Name: fmt.Sprintf("Envoy streams: configs ACKed, %s, %s streams", kind.name, kk), Value: float64(len(lat)), Unit: fmt.Sprintf("of %d", len(lat)+missing)},
		)
	}
	reopened := 0
	for _, e := range envoys {
		e.mu.Lock()
		reopened += e.streams - 1
		e.mu.Unlock()
	}
	if reopened > 0 {
		log.Printf("envoy: %d streams were opened again (a stream failed)", reopened)
	}
	return figs
}

// envoyTraffic sums the responses the envoys received by type, and their protobuf bytes.
func envoyTraffic(envoys []*envoy) (map[string]int, int64) {
	sum, bytes := map[string]int{}, int64(0)
	for _, e := range envoys {
		received, b := e.traffic()
		for t, n := range received {
			sum[t] += n
		}
		bytes += b
	}
	return sum, bytes
}

// envoyLatencies waits up to timeout for every Envoy of each change's scope to ACK the config routing the topic
// to its new cluster, and returns the times from change to ACK and how many never came.
func envoyLatencies(envoys []*envoy, changes []envoyChange, timeout time.Duration) (lat []time.Duration, missing int) {
	deadline := time.Now().Add(timeout)
	for _, c := range changes {
		for i := c.scope * envoyScopeShare; i < min(len(envoys), (c.scope+1)*envoyScopeShare); i++ {
			for {
				at, ok := envoys[i].ackedAt(c.topic, c.cluster, c.t0)
				if ok {
					lat = append(lat, at.Sub(c.t0))
					break
				}
				if time.Now().After(deadline) {
					missing++
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
	}
	return lat, missing
}
