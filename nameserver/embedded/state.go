package embedded

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/rocketpilot/rocketpilot/remoting"
)

// NamespaceOrderTopicConfig is the KV namespace that holds the order configuration of topics
// (NamesrvUtil.NAMESPACE_ORDER_TOPIC_CONFIG); with Options.OrderMessageEnable, 105 answers carry its value for
// the topic as orderTopicConf.
const NamespaceOrderTopicConfig = "ORDER_TOPIC_CONFIG"

// Broker is one broker group: its cluster, name, zone and addresses by broker id, id 0 being the master.
type Broker struct {
	Cluster, Name, Zone string
	Addrs               map[int64]string
}

// shape is one topic's queue data, sorted by broker name with one entry per broker. Shapes are interned: every
// topic with the same queue data points at the same shape, and a shape is never modified once published, so a
// reader may keep using one after it releases the lock.
type shape struct {
	queues []remoting.QueueData
	key    string // the intern key, see appendShapeKey
	refs   int    // topics pointing at it; guarded by state.mu
}

func (sh *shape) index(brokerName string) int {
	for i := range sh.queues {
		if sh.queues[i].BrokerName == brokerName {
			return i
		}
	}
	return -1
}

// state is the simulated RouteInfoManager and KVConfigManager. Every table is guarded by mu; the values it
// hands out (shapes, broker data, the sorted topic list) are immutable and replaced on change.
type state struct {
	mu      sync.RWMutex
	topics  map[string]*shape               // topicQueueTable
	shapes  map[string]*shape               // intern table, by key
	brokers map[string]*remoting.BrokerData // brokerAddrTable; clusterAddrTable is derived from it
	kv      map[string]map[string]string    // namespace → key → value
	live    map[liveKey]*liveBroker         // brokerLiveTable: brokers registered over TCP (103)
	filters map[liveKey][]string            // filterServerTable

	// sorted caches the sorted topic names; nil after topics were added or removed. It is stored while holding
	// at least the read lock and cleared while holding the write lock, so a stored list is never stale.
	sorted atomic.Pointer[[]string]

	// Scratch space for interning without allocating when the shape already exists; guarded by mu (write).
	scratchQ   []remoting.QueueData
	scratchKey []byte
}

func newState() *state {
	return &state{
		topics:  make(map[string]*shape),
		shapes:  make(map[string]*shape),
		brokers: make(map[string]*remoting.BrokerData),
		kv:      make(map[string]map[string]string),
		live:    make(map[liveKey]*liveBroker),
		filters: make(map[liveKey][]string),
	}
}

// appendShapeKey writes an unambiguous binary key of sorted, deduplicated queue data.
func appendShapeKey(dst []byte, queues []remoting.QueueData) []byte {
	for _, q := range queues {
		dst = binary.AppendUvarint(dst, uint64(len(q.BrokerName)))
		dst = append(dst, q.BrokerName...)
		dst = binary.BigEndian.AppendUint32(dst, uint32(q.ReadQueueNums))
		dst = binary.BigEndian.AppendUint32(dst, uint32(q.WriteQueueNums))
		dst = binary.BigEndian.AppendUint32(dst, uint32(q.Perm))
		dst = binary.BigEndian.AppendUint32(dst, uint32(q.TopicSysFlag))
	}
	return dst
}

// internLocked returns the shared shape of queues, which must be sorted by broker name without duplicates. A new
// shape copies queues. The caller holds the write lock and must assign the result (see assignLocked), or a
// new shape stays in the intern table with no reference until the next time it is used.
func (st *state) internLocked(queues []remoting.QueueData) *shape {
	st.scratchKey = appendShapeKey(st.scratchKey[:0], queues)
	if sh, ok := st.shapes[string(st.scratchKey)]; ok { // no allocation: the compiler does not copy the key
		return sh
	}
	sh := &shape{queues: slices.Clone(queues), key: string(st.scratchKey)}
	st.shapes[sh.key] = sh
	return sh
}

// canonicalLocked sorts queues by broker name into the scratch slice, the last entry of a broker winning as in
// Java's per-topic map of queue data.
func (st *state) canonicalLocked(queues []remoting.QueueData) []remoting.QueueData {
	q := append(st.scratchQ[:0], queues...)
	slices.SortStableFunc(q, func(a, b remoting.QueueData) int { return cmp.Compare(a.BrokerName, b.BrokerName) })
	out := q[:0]
	for i := range q {
		if i+1 < len(q) && q[i+1].BrokerName == q[i].BrokerName {
			continue
		}
		out = append(out, q[i])
	}
	st.scratchQ = q[:0]
	return out
}

// assignLocked points topic at sh (nil removes the topic), keeping reference counts and the sorted cache right.
func (st *state) assignLocked(topic string, sh *shape) {
	old, existed := st.topics[topic]
	if old == sh && existed {
		return
	}
	if sh == nil {
		if existed {
			delete(st.topics, topic)
			st.releaseLocked(old)
			st.sorted.Store(nil)
		}
		return
	}
	sh.refs++
	st.topics[topic] = sh
	if existed {
		st.releaseLocked(old)
	} else {
		st.sorted.Store(nil)
	}
}

func (st *state) releaseLocked(sh *shape) {
	sh.refs--
	if sh.refs <= 0 && st.shapes[sh.key] == sh {
		delete(st.shapes, sh.key)
	}
}

// dropUnreferencedLocked removes a shape interned but never assigned.
func (st *state) dropUnreferencedLocked(sh *shape) {
	if sh != nil && sh.refs == 0 && st.shapes[sh.key] == sh {
		delete(st.shapes, sh.key)
	}
}

// RegisterBroker adds a broker group to the broker table, or replaces the group of the same name (its cluster,
// zone and addresses). The addresses are copied.
func (s *NameServer) RegisterBroker(b Broker) {
	bd := &remoting.BrokerData{Cluster: b.Cluster, BrokerName: b.Name, ZoneName: b.Zone, BrokerAddrs: maps.Clone(b.Addrs)}
	if bd.BrokerAddrs == nil {
		bd.BrokerAddrs = map[int64]string{}
	}
	st := s.st
	st.mu.Lock()
	st.brokers[b.Name] = bd
	st.mu.Unlock()
}

// ExpireBroker does what Java's RouteInfoManager does when a group's last address expires: the group leaves the
// broker table and its cluster, its queue data leaves every topic, and a topic left without queue data is
// removed. The queue data of name is removed even if the group was never registered.
func (s *NameServer) ExpireBroker(name string) {
	st := s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	st.expireLocked(name)
}

func (st *state) expireLocked(name string) {
	delete(st.brokers, name)
	// Each distinct shape is transformed once; the walk over the topics is one map lookup per topic.
	next := make(map[*shape]*shape)
	for topic, sh := range st.topics {
		ns, seen := next[sh]
		if !seen {
			ns = sh
			if i := sh.index(name); i >= 0 {
				rest := append(st.scratchQ[:0], sh.queues[:i]...)
				rest = append(rest, sh.queues[i+1:]...)
				st.scratchQ = rest[:0]
				ns = nil
				if len(rest) > 0 {
					ns = st.internLocked(rest)
				}
			}
			next[sh] = ns
		}
		if ns != sh {
			st.assignLocked(topic, ns)
		}
	}
	for _, ns := range next {
		st.dropUnreferencedLocked(ns)
	}
}

// RemoveBrokerAddr takes one broker of a group down, e.g. a slave. When it was the group's last address the
// group expires as with ExpireBroker. Unknown groups and ids are ignored.
func (s *NameServer) RemoveBrokerAddr(name string, id int64) {
	st := s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	bd, ok := st.brokers[name]
	if !ok {
		return
	}
	if _, ok := bd.BrokerAddrs[id]; !ok {
		return
	}
	if len(bd.BrokerAddrs) == 1 {
		st.expireLocked(name)
		return
	}
	nb := *bd
	nb.BrokerAddrs = maps.Clone(bd.BrokerAddrs)
	delete(nb.BrokerAddrs, id)
	st.brokers[name] = &nb
}

// SetTopic replaces a topic's queue data, creating the topic if needed. Queue data is kept sorted by broker
// name, one entry per broker (the last one given wins). With no queue data the topic is removed: the Java
// NameServer ignores a topic registration without queues and drops a topic whose last queue data leaves.
func (s *NameServer) SetTopic(topic string, queues ...remoting.QueueData) {
	st := s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(queues) == 0 {
		st.assignLocked(topic, nil)
		return
	}
	st.assignLocked(topic, st.internLocked(st.canonicalLocked(queues)))
}

// SetTopics gives every topic of topics the same queue data, as SetTopic would one by one, under one lock and
// with one interning: the fast way to load many topics.
func (s *NameServer) SetTopics(topics []string, queues ...remoting.QueueData) {
	st := s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	var sh *shape
	if len(queues) > 0 {
		sh = st.internLocked(st.canonicalLocked(queues))
	}
	for _, topic := range topics {
		st.assignLocked(topic, sh)
	}
	st.dropUnreferencedLocked(sh)
}

// RemoveTopic removes a topic (as DELETE_TOPIC_IN_NAMESRV would).
func (s *NameServer) RemoveTopic(topic string) {
	st := s.st
	st.mu.Lock()
	st.assignLocked(topic, nil)
	st.mu.Unlock()
}

// SetPerm changes the perm of a topic's queue data on one broker group. The topic's shared queue data is copied,
// never modified, so other topics of the same shape keep their perm.
func (s *NameServer) SetPerm(topic, brokerName string, perm int32) error {
	st := s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	sh, ok := st.topics[topic]
	if !ok {
		return fmt.Errorf("topic %q does not exist", topic)
	}
	i := sh.index(brokerName)
	if i < 0 {
		return fmt.Errorf("topic %q has no queue data on broker %q", topic, brokerName)
	}
	if sh.queues[i].Perm == perm {
		return nil
	}
	q := append(st.scratchQ[:0], sh.queues...)
	q[i].Perm = perm
	st.scratchQ = q[:0]
	st.assignLocked(topic, st.internLocked(q))
	return nil
}

// TopicCount returns the number of topics.
func (s *NameServer) TopicCount() int {
	st := s.st
	st.mu.RLock()
	defer st.mu.RUnlock()
	return len(st.topics)
}

// Topics returns every topic name, sorted.
func (s *NameServer) Topics() []string {
	return slices.Clone(s.st.sortedTopics())
}

// sortedTopics returns the cached sorted topic list; the caller must not modify it.
func (st *state) sortedTopics() []string {
	if p := st.sorted.Load(); p != nil {
		return *p
	}
	st.mu.RLock()
	defer st.mu.RUnlock()
	if p := st.sorted.Load(); p != nil {
		return *p
	}
	list := slices.Sorted(maps.Keys(st.topics))
	st.sorted.Store(&list) // under the read lock: no writer can have changed the topics meanwhile
	return list
}

// SetKV sets a KV config item (PUT_KV_CONFIG).
func (s *NameServer) SetKV(namespace, key, value string) {
	st := s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	ns := st.kv[namespace]
	if ns == nil {
		ns = make(map[string]string)
		st.kv[namespace] = ns
	}
	ns[key] = value
}

// DeleteKV removes a KV config item (DELETE_KV_CONFIG). As in Java the namespace stays, possibly empty.
func (s *NameServer) DeleteKV(namespace, key string) {
	st := s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	delete(st.kv[namespace], key)
}

// routeLocked is pickupTopicRouteData: the topic's queue data, and the broker data of those of its groups that
// are in the broker table. ok is false when the topic is unknown or none of its groups is registered. The
// result shares immutable state: it may be read after the lock is released but must not be modified.
func (st *state) routeLocked(topic string) (r remoting.TopicRouteData, ok bool) {
	sh, found := st.topics[topic]
	if !found {
		return r, false
	}
	r.QueueDatas = sh.queues
	for _, q := range sh.queues {
		if bd, ok := st.brokers[q.BrokerName]; ok {
			r.BrokerDatas = append(r.BrokerDatas, *bd)
			if len(st.filters) > 0 { // as pickupTopicRouteData: the filter servers of every address of the group
				for _, addr := range bd.BrokerAddrs {
					if list, ok := st.filters[liveKey{bd.Cluster, addr}]; ok {
						if r.FilterServerTable == nil {
							r.FilterServerTable = make(map[string][]string)
						}
						r.FilterServerTable[addr] = list
					}
				}
			}
		}
	}
	return r, len(r.BrokerDatas) > 0
}

// Route returns what a 105 request for topic answers (without orderTopicConf), as a copy the caller owns.
func (s *NameServer) Route(topic string) (remoting.TopicRouteData, bool) {
	st := s.st
	st.mu.RLock()
	r, ok := st.routeLocked(topic)
	st.mu.RUnlock()
	if !ok {
		return remoting.TopicRouteData{}, false
	}
	r.QueueDatas = slices.Clone(r.QueueDatas)
	for i := range r.BrokerDatas {
		r.BrokerDatas[i].BrokerAddrs = maps.Clone(r.BrokerDatas[i].BrokerAddrs)
	}
	fs := make(map[string][]string, len(r.FilterServerTable))
	for addr, list := range r.FilterServerTable {
		fs[addr] = slices.Clone(list)
	}
	r.FilterServerTable = fs
	return r, true
}

// clusterInfoLocked is getAllClusterInfo. Broker data is shared and must not be modified.
func (st *state) clusterInfoLocked() *remoting.ClusterInfo {
	ci := &remoting.ClusterInfo{
		BrokerAddrTable:  make(map[string]remoting.BrokerData, len(st.brokers)),
		ClusterAddrTable: make(map[string][]string),
	}
	for name, bd := range st.brokers {
		ci.BrokerAddrTable[name] = *bd
		ci.ClusterAddrTable[bd.Cluster] = append(ci.ClusterAddrTable[bd.Cluster], name)
	}
	for _, names := range ci.ClusterAddrTable {
		slices.Sort(names)
	}
	return ci
}

// ClusterInfo returns what a 106 request answers, as a copy the caller owns.
func (s *NameServer) ClusterInfo() *remoting.ClusterInfo {
	st := s.st
	st.mu.RLock()
	ci := st.clusterInfoLocked()
	st.mu.RUnlock()
	for name, bd := range ci.BrokerAddrTable {
		bd.BrokerAddrs = maps.Clone(bd.BrokerAddrs)
		ci.BrokerAddrTable[name] = bd
	}
	return ci
}

// topicsByCluster is getTopicsByCluster: the sorted topics with queue data on a group of the cluster. An unknown
// cluster has no topics (Java catches its own NullPointerException and answers an empty list).
func (st *state) topicsByCluster(cluster string) []string {
	st.mu.RLock()
	defer st.mu.RUnlock()
	groups := make(map[string]bool)
	for name, bd := range st.brokers {
		if bd.Cluster == cluster {
			groups[name] = true
		}
	}
	if len(groups) == 0 {
		return []string{}
	}
	in := make(map[*shape]bool)
	list := []string{}
	for topic, sh := range st.topics {
		hit, seen := in[sh]
		if !seen {
			for _, q := range sh.queues {
				if groups[q.BrokerName] {
					hit = true
					break
				}
			}
			in[sh] = hit
		}
		if hit {
			list = append(list, topic)
		}
	}
	slices.Sort(list)
	return list
}

func (st *state) kvValue(namespace, key string) (string, bool) {
	st.mu.RLock()
	defer st.mu.RUnlock()
	v, ok := st.kv[namespace][key]
	return v, ok
}

func (st *state) kvTable(namespace string) (*remoting.KVTable, bool) {
	st.mu.RLock()
	defer st.mu.RUnlock()
	ns, ok := st.kv[namespace]
	if !ok {
		return nil, false
	}
	return &remoting.KVTable{Table: maps.Clone(ns)}, true
}

// shapeCount reports how many distinct queue-data shapes are held (for tests).
func (st *state) shapeCount() int {
	st.mu.RLock()
	defer st.mu.RUnlock()
	return len(st.shapes)
}
