package routing

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"slices"
	"strings"
)

// Perm bits of a topic's queues on one broker group (RocketMQ's PermName).
const (
	PermPriority int32 = 8
	PermRead     int32 = 4
	PermWrite    int32 = 2
	PermInherit  int32 = 1
)

// BrokerAddr is one broker of a group: id 0 is the master, others are slaves.
type BrokerAddr struct {
	ID   int64  `json:"id"`
	Addr string `json:"addr"`
}

// Broker is a broker group as the NameServer's cluster table (106) reports it.
type Broker struct {
	Cluster string       `json:"cluster"`
	Name    string       `json:"name"`
	Zone    string       `json:"zone,omitempty"`
	Addrs   []BrokerAddr `json:"addrs"` // sorted by ID
}

// Member is one broker group's part of a topic's route: where it is and what the topic may do there.
type Member struct {
	Cluster        string       `json:"cluster"`
	BrokerName     string       `json:"brokerName"`
	Zone           string       `json:"zone,omitempty"`
	Addrs          []BrokerAddr `json:"addrs"` // sorted by ID
	ReadQueueNums  int32        `json:"readQueueNums"`
	WriteQueueNums int32        `json:"writeQueueNums"`
	Perm           int32        `json:"perm"`
	TopicSysFlag   int32        `json:"topicSysFlag"`
	// SourcePerm is the perm the sources reported when a policy changed Perm (0 when none did). Acks follow
	// it: a group a policy took out of consume still gets the acks of the messages popped from it before.
	SourcePerm int32 `json:"sourcePerm,omitempty"`
	// Weight is the group's share of sends under a weighted policy (0: no weights; see Policy).
	Weight int32 `json:"weight,omitempty"`
	// AckAlways: a policy routes acks to the group whatever its perm (Policy.Ack).
	AckAlways bool `json:"ackAlways,omitempty"`
}

// Readable reports whether consumers may read the topic from this group.
func (m *Member) Readable() bool { return m.Perm&PermRead != 0 && m.ReadQueueNums > 0 }

// AcksReadable reports whether acks may go back to this group: its queues are readable at the source, whatever
// a policy serves, or a policy routes acks to it anyway.
func (m *Member) AcksReadable() bool {
	if m.AckAlways {
		return true
	}
	perm := m.Perm
	if m.SourcePerm != 0 {
		perm = m.SourcePerm
	}
	return perm&PermRead != 0 && m.ReadQueueNums > 0
}

// Writable reports whether producers may send the topic to this group.
func (m *Member) Writable() bool { return m.Perm&PermWrite != 0 && m.WriteQueueNums > 0 }

// Master returns the address of broker id 0, or "" when the group has no master.
func (m *Member) Master() string {
	if len(m.Addrs) > 0 && m.Addrs[0].ID == 0 {
		return m.Addrs[0].Addr
	}
	return ""
}

// Route is a topic's route as a source reports it.
type Route struct {
	Members        []Member
	OrderTopicConf string
}

// BrokerSet is the shape of a topic's route, identified by a hash of its content. BrokerSets are immutable and
// interned by the Table: topics of the same shape point to the same value.
type BrokerSet struct {
	// Hash is 16 hex digits of the SHA-256 of the canonical content: stable across processes and restarts.
	Hash    string   `json:"hash"`
	Members []Member `json:"members"` // sorted by BrokerName
}

// Clusters returns the distinct broker cluster names of the set, sorted.
func (b *BrokerSet) Clusters() []string {
	var out []string
	for _, m := range b.Members {
		if m.Cluster != "" && !slices.Contains(out, m.Cluster) {
			out = append(out, m.Cluster)
		}
	}
	slices.Sort(out)
	return out
}

// Member returns the member for a broker group, or nil.
func (b *BrokerSet) Member(brokerName string) *Member {
	i, ok := slices.BinarySearchFunc(b.Members, brokerName, func(m Member, name string) int {
		return strings.Compare(m.BrokerName, name)
	})
	if !ok {
		return nil
	}
	return &b.Members[i]
}

// Topic is one topic of the merged model.
type Topic struct {
	Name           string     `json:"name"`
	BrokerSet      *BrokerSet `json:"-"`
	OrderTopicConf string     `json:"orderTopicConf,omitempty"`
	// Pop is the Pop mode of the policy the topic follows (nil: none). It is route-level: topics of one broker set
	// with different pop rules share their BrokerSet and cluster.
	Pop *PopPolicy `json:"pop,omitempty"`
	// Version is the table version at which this topic last changed.
	Version uint64 `json:"version"`
}

// canonicalMembers returns a sorted deep copy of members: groups by name, addresses by id.
func canonicalMembers(members []Member) []Member {
	return canonicalGroups(members, func(m *Member) (string, *[]BrokerAddr) { return m.BrokerName, &m.Addrs })
}

// canonicalGroups returns a sorted deep copy of broker groups (a route's members, or a cluster table's brokers):
// by the name key gives, each one's addresses by id.
func canonicalGroups[G any](groups []G, key func(*G) (string, *[]BrokerAddr)) []G {
	out := slices.Clone(groups)
	for i := range out {
		_, addrs := key(&out[i])
		*addrs = slices.Clone(*addrs)
		slices.SortFunc(*addrs, func(a, b BrokerAddr) int { return cmp.Compare(a.ID, b.ID) })
	}
	slices.SortFunc(out, func(a, b G) int {
		x, _ := key(&a)
		y, _ := key(&b)
		return strings.Compare(x, y)
	})
	return out
}

// hashMembers hashes canonical members. buf is scratch space, returned for reuse.
func hashMembers(members []Member, buf []byte) (string, []byte) {
	buf = buf[:0]
	str := func(s string) {
		buf = binary.AppendUvarint(buf, uint64(len(s)))
		buf = append(buf, s...)
	}
	num := func(n int64) { buf = binary.AppendVarint(buf, n) }
	num(int64(len(members)))
	for _, m := range members {
		str(m.Cluster)
		str(m.BrokerName)
		str(m.Zone)
		num(int64(m.ReadQueueNums))
		num(int64(m.WriteQueueNums))
		num(int64(m.Perm))
		num(int64(m.TopicSysFlag))
		num(int64(m.SourcePerm))
		num(int64(m.Weight))
		if m.AckAlways {
			num(1)
		} else {
			num(0)
		}
		num(int64(len(m.Addrs)))
		for _, a := range m.Addrs {
			num(a.ID)
			str(a.Addr)
		}
	}
	sum := sha256.Sum256(buf)
	return hex.EncodeToString(sum[:8]), buf
}

func equalMembers(a, b []Member) bool {
	return slices.EqualFunc(a, b, func(x, y Member) bool {
		return x.Cluster == y.Cluster && x.BrokerName == y.BrokerName && x.Zone == y.Zone &&
			x.ReadQueueNums == y.ReadQueueNums && x.WriteQueueNums == y.WriteQueueNums &&
			x.Perm == y.Perm && x.TopicSysFlag == y.TopicSysFlag && x.SourcePerm == y.SourcePerm && x.Weight == y.Weight &&
			x.AckAlways == y.AckAlways &&
			slices.Equal(x.Addrs, y.Addrs)
	})
}
