package simbroker

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/rocketpilot/rocketpilot/remoting"
	"github.com/rocketpilot/rocketpilot/remoting/message"
)

// queueCount is how many queues a topic has: the larger of its read and write counts.
func queueCount(t remoting.TopicConfig) int32 { return max(t.ReadQueueNums, t.WriteQueueNums) }

// stored is one message in a queue: its decoded form, the bytes a pull returns, and its tags for filtering.
type stored struct {
	ext  *message.Ext
	raw  []byte
	tags string
}

// queue is one message queue: a bounded run of messages starting at offset min.
type queue struct {
	min  int64
	msgs []*stored
	// arrived is closed and replaced when a message is appended: how a suspended pull learns of it.
	arrived chan struct{}
}

func (q *queue) max() int64 { return q.min + int64(len(q.msgs)) }

type topicState struct {
	cfg    remoting.TopicConfig
	queues []*queue
}

// offsetKey names a consumer group's position in a queue.
type offsetKey struct {
	group, topic string
	queue        int32
}

// store is a broker group's messages, consumer offsets and queue locks; a slave shares its master's (replication
// is instant in the simulation). It is safe for concurrent use.
type store struct {
	capacity int // messages kept per queue

	mu        sync.Mutex
	version   remoting.DataVersion // moves with every topic change, for the NameServers
	topics    map[string]*topicState
	commitLog int64               // the next physical offset
	byPhys    map[int64]*stored   // physical offset → message, for send back and pop acks
	offsets   map[offsetKey]int64 // consumer offsets
	locks     map[offsetKey]lock
	dropped   int64 // messages dropped from full queues, oldest first

	pop *popState // the group's pop state, which lives with its store (it has its own lock)
}

type lock struct {
	clientID string
	at       time.Time
}

func newStore(capacity int) *store {
	return &store{capacity: capacity, topics: map[string]*topicState{}, byPhys: map[int64]*stored{},
		offsets: map[offsetKey]int64{}, locks: map[offsetKey]lock{}, pop: newPopState()}
}

// setTopic creates or updates a topic; queues only grow (Java never shrinks a topic's queues in place).
func (s *store) setTopic(cfg remoting.TopicConfig) {
	if cfg.Perm == 0 {
		cfg.Perm = remoting.PermRead | remoting.PermWrite
	}
	if cfg.TopicFilterType == "" {
		cfg.TopicFilterType = remoting.TopicFilterSingleTag
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.topics[cfg.TopicName]
	if t == nil {
		t = &topicState{}
		s.topics[cfg.TopicName] = t
	}
	t.cfg = cfg
	s.version.Counter++
	s.version.Timestamp = time.Now().UnixMilli()
	for int32(len(t.queues)) < queueCount(cfg) {
		t.queues = append(t.queues, &queue{arrived: make(chan struct{})})
	}
}

// setTopicIfAbsent creates a topic unless it exists, and says whether it did.
func (s *store) setTopicIfAbsent(cfg remoting.TopicConfig) bool {
	s.mu.Lock()
	_, ok := s.topics[cfg.TopicName]
	s.mu.Unlock()
	if !ok {
		s.setTopic(cfg)
	}
	return !ok
}

func (s *store) topic(name string) (remoting.TopicConfig, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.topics[name]
	if t == nil {
		return remoting.TopicConfig{}, false
	}
	return t.cfg, true
}

// topicConfigs returns every topic and the data version they are at.
func (s *store) topicConfigs() (map[string]remoting.TopicConfig, remoting.DataVersion) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]remoting.TopicConfig, len(s.topics))
	for name, t := range s.topics {
		out[name] = t.cfg
	}
	return out, s.version
}

// put appends a message to its queue, encoding it as Java stores it, and returns it with its offsets set.
func (s *store) put(m *message.Ext, storeHost netip.AddrPort) (*message.Ext, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.putLocked(m, storeHost)
}

// putBatch stores the messages of one SEND_BATCH_MESSAGE at consecutive offsets of their queue, nothing between
// them, as CommitLog.asyncPutMessages appends a batch in one piece.
func (s *store) putBatch(ms []*message.Ext, storeHost netip.AddrPort) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range ms {
		if _, err := s.putLocked(m, storeHost); err != nil {
			return err
		}
	}
	return nil
}

func (s *store) putLocked(m *message.Ext, storeHost netip.AddrPort) (*message.Ext, error) {
	t := s.topics[m.Topic]
	if t == nil || m.QueueID < 0 || int(m.QueueID) >= len(t.queues) {
		return nil, fmt.Errorf("no queue %d of topic %s", m.QueueID, m.Topic)
	}
	q := t.queues[m.QueueID]
	m.QueueOffset = q.max()
	m.CommitLogOffset = s.commitLog
	m.StoreHost = storeHost
	if m.StoreTimestamp == 0 {
		m.StoreTimestamp = time.Now().UnixMilli()
	}
	raw, err := message.AppendExt(nil, m)
	if err != nil {
		return nil, err
	}
	s.commitLog += int64(len(raw))
	st := &stored{ext: m, raw: raw, tags: m.Properties[message.PropertyTags]}
	q.msgs = append(q.msgs, st)
	s.byPhys[m.CommitLogOffset] = st
	if len(q.msgs) > s.capacity {
		// A real broker's retention deletes the oldest files; here the oldest message goes.
		delete(s.byPhys, q.msgs[0].ext.CommitLogOffset)
		q.msgs[0] = nil
		q.msgs = q.msgs[1:]
		q.min++
		s.dropped++
	}
	close(q.arrived)
	q.arrived = make(chan struct{})
	return m, nil
}

// getStatus is Java's GetMessageStatus, the part a pull answers from.
type getStatus int

const (
	statusFound getStatus = iota
	statusNoMessageInQueue
	statusOffsetTooSmall
	statusOffsetOverflowOne
	statusOffsetOverflowBadly
	statusNoMatchedMessage
	statusNoQueue
)

type getResult struct {
	status         getStatus
	msgs           []*stored
	next, min, max int64
	arrived        <-chan struct{} // closed when the queue next grows
}

// get reads up to n messages of a queue from offset that match, as DefaultMessageStore.getMessage does: a filtered
// message is skipped, and next moves past it.
func (s *store) get(topic string, queueID int32, offset int64, n int, match func(*stored) bool) getResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.topics[topic]
	if t == nil || queueID < 0 || int(queueID) >= len(t.queues) {
		return getResult{status: statusNoQueue}
	}
	q := t.queues[queueID]
	r := getResult{min: q.min, max: q.max(), next: offset, arrived: q.arrived}
	switch {
	case r.max == 0:
		r.status, r.next = statusNoMessageInQueue, 0
	case offset < r.min:
		r.status, r.next = statusOffsetTooSmall, r.min
	case offset == r.max:
		r.status = statusOffsetOverflowOne
	case offset > r.max:
		r.status, r.next = statusOffsetOverflowBadly, r.max
	default:
		r.status = statusNoMatchedMessage
		for i := offset - q.min; i < int64(len(q.msgs)) && len(r.msgs) < n; i++ {
			m := q.msgs[i]
			r.next = m.ext.QueueOffset + 1
			if match == nil || match(m) {
				r.msgs = append(r.msgs, m)
			}
		}
		if len(r.msgs) > 0 {
			r.status = statusFound
		}
	}
	return r
}

func (s *store) minMax(topic string, queueID int32) (lo, hi int64, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.topics[topic]
	if t == nil || queueID < 0 || int(queueID) >= len(t.queues) {
		return 0, 0, false
	}
	q := t.queues[queueID]
	return q.min, q.max(), true
}

// searchOffset is the offset of the first message stored at or after ts (the queue's max when none).
func (s *store) searchOffset(topic string, queueID int32, ts int64) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.topics[topic]
	if t == nil || queueID < 0 || int(queueID) >= len(t.queues) {
		return 0
	}
	q := t.queues[queueID]
	for _, m := range q.msgs {
		if m.ext.StoreTimestamp >= ts {
			return m.ext.QueueOffset
		}
	}
	return q.max()
}

func (s *store) byOffset(phys int64) (*message.Ext, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.byPhys[phys]
	if m == nil {
		return nil, false
	}
	return m.ext, true
}

func (s *store) commitOffset(k offsetKey, offset int64) {
	s.mu.Lock()
	s.offsets[k] = offset
	s.mu.Unlock()
}

func (s *store) consumerOffset(k offsetKey) (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.offsets[k]
	return o, ok
}

// tryLock locks a queue for a client, as RebalanceLockManager.tryLockBatch does: a free queue, an expired lock or
// the client's own is granted (and renewed).
func (s *store) tryLock(k offsetKey, clientID string, now time.Time, expiry time.Duration) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l, ok := s.locks[k]; ok && l.clientID != clientID && now.Sub(l.at) < expiry {
		return false
	}
	s.locks[k] = lock{clientID: clientID, at: now}
	return true
}

func (s *store) unlock(k offsetKey, clientID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l, ok := s.locks[k]; ok && l.clientID == clientID {
		delete(s.locks, k)
	}
}

// Dropped is how many messages full queues dropped, oldest first.
func (s *store) droppedCount() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dropped
}

// matchTags returns the filter of a subscription expression as Java's tag filter reads it: "*" or empty matches
// every message, "a || b" the messages tagged a or b.
func matchTags(expr string) func(*stored) bool {
	expr = strings.TrimSpace(expr)
	if expr == "" || expr == "*" {
		return nil
	}
	tags := map[string]bool{}
	for _, t := range strings.Split(expr, "||") {
		if t = strings.TrimSpace(t); t != "" {
			tags[t] = true
		}
	}
	return func(m *stored) bool { return tags[m.tags] }
}
