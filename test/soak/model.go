package soak

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/rocketpilot/rocketpilot/nameserver/embedded"
	"github.com/rocketpilot/rocketpilot/remoting"
)

// Perm profiles a topic is in: which of its groups are read-write, read-only or write-only. Perm churn moves a
// topic from one to another; a few profiles keep the number of distinct routes, and so of broker sets and
// clusters, small enough to reach its steady state within the warm-up.
const (
	profileReadWrite = iota
	profileHomeReadOnly
	profileHomeWriteOnly
	profileAllReadOnly
	profileAllWriteOnly
	profiles
)

// model is the NameServer and the truth about it: what every topic is configured with on its brokers, which
// groups are down, and when each topic's route last changed. Every change to the NameServer goes through it,
// under mu, so that a reader holding mu sees the NameServer and the change times agree.
type model struct {
	cfg    Config
	ns     *embedded.NameServer
	names  []string // the pool of topic names, fixed: churn never creates a name outside it
	index  map[string]int
	groups map[string]int // group name → index

	mu sync.RWMutex
	// intended is each existing topic's queue data as its brokers register it, nil for a deleted topic. What the
	// NameServer holds is that without the queue data of expired groups (a topic left with none does not exist).
	intended  []([]remoting.QueueData)
	profile   []int       // per topic, its perm profile
	changedAt []time.Time // per topic: the last change of its route, deletion and creation included
	brokers   []embedded.Broker
	down      []downState // per group
	existing  int         // topics with intended queue data
	flaps     int         // groups taken down so far: every other one loses only its slave
}

type downState int

const (
	up        downState = iota
	expired             // the whole group expired: its queue data left every topic
	slaveDown           // its slave (id 1) left; the master serves on
)

func topicName(i int) string { return fmt.Sprintf("soak-topic-%05d", i) }
func groupName(g int) string { return fmt.Sprintf("broker-%02d", g) }

// newModel loads the NameServer: cfg.BrokerGroups groups in two clusters, each a master and a slave on loopback
// addresses (never dialled), and 80% of the pool's topics, most on two groups, some on one or three.
func newModel(cfg Config) *model {
	m := &model{cfg: cfg, ns: embedded.New(embedded.Options{}), index: map[string]int{}, groups: map[string]int{},
		intended: make([][]remoting.QueueData, cfg.Topics), profile: make([]int, cfg.Topics), changedAt: make([]time.Time, cfg.Topics),
		down: make([]downState, cfg.BrokerGroups)}
	for g := range cfg.BrokerGroups {
		b := embedded.Broker{Cluster: fmt.Sprintf("soak-cluster-%d", g%2), Name: groupName(g), Zone: fmt.Sprintf("zone-%d", g%3),
			Addrs: map[int64]string{0: fmt.Sprintf("127.0.1.%d:10911", g+1), 1: fmt.Sprintf("127.0.2.%d:10911", g+1)}}
		m.brokers = append(m.brokers, b)
		m.groups[b.Name] = g
		m.ns.RegisterBroker(b)
	}
	now := time.Now()
	for i := range cfg.Topics {
		m.names = append(m.names, topicName(i))
		m.index[m.names[i]] = i
		m.changedAt[i] = now
		if i%5 != 4 {
			m.intended[i] = m.shapeOf(i)
			m.existing++
			m.ns.SetTopic(m.names[i], m.intended[i]...)
		}
	}
	return m
}

// shapeOf is topic i's queue data in its perm profile: on one to three neighbouring groups (the first its home),
// 4 or 8 queues.
func (m *model) shapeOf(i int) []remoting.QueueData {
	g := m.cfg.BrokerGroups
	queues := int32(4 << (i / 7 % 2))
	rw, ro, wo := remoting.PermRead|remoting.PermWrite, remoting.PermRead, remoting.PermWrite
	home, others := rw, rw
	switch m.profile[i] {
	case profileHomeReadOnly:
		home = ro
	case profileHomeWriteOnly:
		home = wo
	case profileAllReadOnly:
		home, others = ro, ro
	case profileAllWriteOnly:
		home, others = wo, wo
	}
	q := func(group int) remoting.QueueData {
		perm := others
		if group == i%g {
			perm = home
		}
		return remoting.QueueData{BrokerName: groupName(group), ReadQueueNums: queues, WriteQueueNums: queues, Perm: perm}
	}
	// Neighbouring groups only: a few dozen shapes, so that every (shape, profile) has many topics and the
	// broker sets in use reach their steady state early.
	first := i % g
	out := []remoting.QueueData{q(first)}
	if i%11 != 0 {
		out = append(out, q((first+1)%g))
	}
	if i%13 == 0 {
		out = append(out, q((first+2)%g))
	}
	return out
}

// served is the queue data the NameServer holds for intended queue data: without the expired groups'.
func (m *model) served(q []remoting.QueueData) []remoting.QueueData {
	var out []remoting.QueueData
	for _, d := range q {
		if m.down[m.groupIndex(d.BrokerName)] != expired {
			out = append(out, d)
		}
	}
	return out
}

func (m *model) groupIndex(name string) int { return m.groups[name] }

// pushLocked writes topic i's served queue data to the NameServer and notes the change. Caller holds mu.
func (m *model) pushLocked(i int, now time.Time) {
	if q := m.served(m.intended[i]); len(q) > 0 {
		m.ns.SetTopic(m.names[i], q...)
	} else {
		m.ns.RemoveTopic(m.names[i])
	}
	m.changedAt[i] = now
}

// createOrDelete creates a deleted topic of the pool (read-write) or deletes an existing one, keeping about 80%
// of the pool existing. It reports what it did and the topic, or "" when there was none to pick.
func (m *model) createOrDelete(rng *rand.Rand) (kind, topic string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	create := m.existing*5 < m.cfg.Topics*4 || (m.existing*5 == m.cfg.Topics*4 && rng.IntN(2) == 0)
	i := m.pickLocked(rng, func(i int) bool { return (m.intended[i] == nil) == create })
	if i < 0 {
		return "", ""
	}
	now := time.Now()
	if create {
		m.profile[i] = profileReadWrite
		m.intended[i] = m.shapeOf(i)
		m.existing++
		kind = churnCreate
	} else {
		m.intended[i] = nil
		m.existing--
		kind = churnDelete
	}
	m.pushLocked(i, now)
	return kind, m.names[i]
}

// pickLocked returns a random index of the pool for which ok holds, or -1.
func (m *model) pickLocked(rng *rand.Rand, ok func(int) bool) int {
	start := rng.IntN(len(m.names))
	for k := range len(m.names) {
		if i := (start + k) % len(m.names); ok(i) {
			return i
		}
	}
	return -1
}

// changePerm moves a random existing topic to another perm profile.
func (m *model) changePerm(rng *rand.Rand) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	i := m.pickLocked(rng, func(i int) bool { return m.intended[i] != nil })
	if i < 0 {
		return ""
	}
	m.setPermLocked(rng, i, time.Now())
	return m.names[i]
}

func (m *model) setPermLocked(rng *rand.Rand, i int, now time.Time) {
	m.profile[i] = (m.profile[i] + 1 + rng.IntN(profiles-1)) % profiles
	m.intended[i] = m.shapeOf(i)
	m.pushLocked(i, now)
}

// changePermOf changes a perm of each existing topic of names (FaultWatcherStalls) and returns how many.
func (m *model) changePermOf(rng *rand.Rand, names []string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	now := time.Now()
	for _, name := range names {
		if i := m.index[name]; m.intended[i] != nil {
			m.setPermLocked(rng, i, now)
			n++
		}
	}
	return n
}

// flap moves the broker groups on: a group down for downFor comes back (its brokers register again with their
// topics' queue data); otherwise, when no group is down and the last came back upFor ago, one goes down — the
// whole group expires, or (every other time) only its slave. It reports what it did ("" for nothing).
func (m *model) flap(rng *rand.Rand, since map[int]time.Time, downFor, upFor time.Duration, lastUp *time.Time) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	for g, st := range m.down {
		if st == up || now.Sub(since[g]) < downFor {
			continue
		}
		m.ns.RegisterBroker(m.brokers[g])
		m.down[g] = up
		delete(since, g)
		*lastUp = now
		for i, q := range m.intended {
			if onGroup(q, g) {
				if st == expired {
					m.pushLocked(i, now)
				} else {
					m.changedAt[i] = now
				}
			}
		}
		return churnRegister
	}
	if len(since) > 0 || now.Sub(*lastUp) < upFor {
		return ""
	}
	g := rng.IntN(len(m.down))
	since[g] = now
	kind := churnExpire
	if m.flaps++; m.flaps%2 == 0 {
		m.down[g] = slaveDown
		m.ns.RemoveBrokerAddr(groupName(g), 1)
		kind = churnSlave
	} else {
		m.down[g] = expired
		m.ns.ExpireBroker(groupName(g))
	}
	for i, q := range m.intended {
		if onGroup(q, g) {
			m.changedAt[i] = now
		}
	}
	return kind
}

func onGroup(q []remoting.QueueData, g int) bool {
	name := groupName(g)
	return slices.ContainsFunc(q, func(d remoting.QueueData) bool { return d.BrokerName == name })
}

// truth is what the checker compares with: the NameServer's route of a topic (ok false when it does not exist)
// and when it last changed, read together under the model's lock.
type truth struct {
	route     remoting.TopicRouteData
	exists    bool
	changedAt time.Time
}

func (m *model) truths(topics []string) map[string]truth {
	out := make(map[string]truth, len(topics))
	m.mu.RLock()
	defer m.mu.RUnlock()
	for _, t := range topics {
		i, ok := m.index[t]
		if !ok {
			continue
		}
		r, exists := m.ns.Route(t)
		out[t] = truth{route: r, exists: exists, changedAt: m.changedAt[i]}
	}
	return out
}

// stableExisting reports whether a topic exists in the NameServer and has not changed since before at.
func (m *model) stableExisting(topic string, at time.Time) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	i, ok := m.index[topic]
	if !ok || !m.changedAt[i].Before(at) {
		return false
	}
	_, exists := m.ns.Route(topic)
	return exists
}
