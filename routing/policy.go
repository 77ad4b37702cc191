package routing

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Policy is routing policy for the topics it matches (a TopicRoute): which broker groups a topic's route lists,
// where producers send and with which weights, where consumers read, which brokers are drained, and whether the
// topic is ordered. The table applies a topic's policy when it merges the topic's sources, so the served broker
// set — and the cluster shared by every topic of the same served shape — already carries it.
type Policy struct {
	// Name identifies the policy in reports ("namespace/name").
	Name string
	// Version identifies its content (a generation, a hash): SetPolicies leaves alone the topics whose policy
	// keeps its Name and a non-empty Version.
	Version string
	// Created orders policies that match the same topic: the oldest wins, then the lowest Name.
	Created time.Time
	Match   TopicMatch
	// RouteQuery restricts the groups the topic's route lists at all; nil lists every group. A topic it would
	// leave without a group is served as its sources report it.
	RouteQuery []Backend
	// Send restricts the groups producers send to (others are served without the write bit); weights, when
	// given, split sends between backends.
	Send []Backend
	// Consume restricts the groups consumers read from (others are served without the read bit).
	Consume []Backend
	// Ack names groups that take acks whatever their perm.
	Ack []Backend
	// Drain names broker groups served read-only.
	Drain []string
	// Ordered keeps every group the topic was served with, even when its sources stop reporting one.
	Ordered bool
	// Pop puts consumer groups in Pop mode for the matched topics (Go sidecars turn their pulls into pops). It
	// shapes the topic's route, never its broker set: the table carries it into each matched Topic.
	Pop *PopPolicy
}

// DefaultInvisibleTime is a PopPolicy's invisible time when the TopicRoute gives none.
const DefaultInvisibleTime = 60 * time.Second

// PopPolicy names the consumer groups in Pop mode and how long a popped message stays invisible. A Topic shares
// its policy's value: it is never changed once given to the table. In JSON the invisible time is a duration
// string ({"consumerGroups": ["g"], "invisibleTime": "1m0s"}).
type PopPolicy struct {
	// ConsumerGroups are sorted, without repeats.
	ConsumerGroups []string
	// InvisibleTime is how long a popped message stays invisible before it is handed out again when not acked.
	InvisibleTime time.Duration
	// Ordered is the policy's ordered flag: the groups pop orderly (a queue's next messages are handed out only
	// once the last ones are acked or their invisible time is over).
	Ordered bool
}

// popJSON is a PopPolicy in JSON: the invisible time as a Go duration ("8s").
type popJSON struct {
	ConsumerGroups []string `json:"consumerGroups"`
	InvisibleTime  string   `json:"invisibleTime"`
	Ordered        bool     `json:"ordered,omitempty"`
}

// MarshalJSON writes the invisible time as a duration string.
func (p PopPolicy) MarshalJSON() ([]byte, error) {
	return json.Marshal(popJSON{ConsumerGroups: p.ConsumerGroups, InvisibleTime: p.InvisibleTime.String(), Ordered: p.Ordered})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (p *PopPolicy) UnmarshalJSON(b []byte) error {
	var j popJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	d, err := time.ParseDuration(j.InvisibleTime)
	if err != nil {
		return fmt.Errorf("pop invisibleTime: %w", err)
	}
	p.ConsumerGroups, p.InvisibleTime, p.Ordered = j.ConsumerGroups, d, j.Ordered
	return nil
}

// NewPopPolicy returns a PopPolicy of the groups (sorted, without repeats); an invisible time of zero or less is
// DefaultInvisibleTime.
func NewPopPolicy(groups []string, invisible time.Duration) *PopPolicy {
	if invisible <= 0 {
		invisible = DefaultInvisibleTime
	}
	return &PopPolicy{ConsumerGroups: slices.Compact(slices.Sorted(slices.Values(groups))), InvisibleTime: invisible}
}

// Equal reports whether two pop policies (either may be nil) say the same.
func (p *PopPolicy) Equal(q *PopPolicy) bool {
	if p == nil || q == nil {
		return p == q
	}
	return p.InvisibleTime == q.InvisibleTime && p.Ordered == q.Ordered && slices.Equal(p.ConsumerGroups, q.ConsumerGroups)
}

// TopicMatch matches topic names: exact, by prefix, or by a regular expression over the whole name.
type TopicMatch struct {
	Exact  []string
	Prefix []string
	Regex  *regexp.Regexp // anchored by the caller: it must match the whole name
}

// Matches reports whether the topic matches.
func (m *TopicMatch) Matches(topic string) bool {
	if slices.Contains(m.Exact, topic) {
		return true
	}
	for _, p := range m.Prefix {
		if strings.HasPrefix(topic, p) {
			return true
		}
	}
	return m.Regex != nil && m.Regex.MatchString(topic)
}

// Backend names broker groups: every group of a broker cluster, or groups by name. Weight is the backend's
// share of sends relative to the other backends' (Weighted says whether one was given).
type Backend struct {
	BrokerCluster string
	BrokerNames   []string
	Weight        int32
	Weighted      bool
}

// Selects reports whether the backend names a member.
func (b *Backend) Selects(m *Member) bool {
	if b.BrokerCluster != "" {
		return m.Cluster == b.BrokerCluster
	}
	return slices.Contains(b.BrokerNames, m.BrokerName)
}

func selected(backends []Backend, m *Member) bool {
	return slices.ContainsFunc(backends, func(b Backend) bool { return b.Selects(m) })
}

// precedes orders policies for a topic several match: older first, then by name.
func (p *Policy) precedes(q *Policy) bool {
	if c := p.Created.Compare(q.Created); c != 0 {
		return c < 0
	}
	return p.Name < q.Name
}

// weightScale spreads a backend's weight over its groups in integers: a group of a backend with weight w over n
// writable groups gets w*weightScale/n.
const weightScale = 1000

// apply returns the members a policy serves for members the sources reported (canonical, sorted by name), and
// whether it changed them. prev are the members last served, for ordered topics.
func (p *Policy) apply(members []Member, prev []Member) []Member {
	out := make([]Member, 0, len(members))
	for _, m := range members {
		if p.RouteQuery != nil && !selected(p.RouteQuery, &m) {
			continue
		}
		out = append(out, m)
	}
	if len(out) == 0 {
		out = append(out, members...) // never serve a topic without a group: the sources' route instead
	}
	if p.Ordered {
		for _, m := range prev {
			if !slices.ContainsFunc(out, func(x Member) bool { return x.BrokerName == m.BrokerName }) {
				out = append(out, m)
			}
		}
		slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.BrokerName, b.BrokerName) })
	}
	sourcePerm := func(m *Member) int32 {
		if m.SourcePerm != 0 { // an ordered topic's retained member, already served under this policy
			return m.SourcePerm
		}
		return m.Perm
	}
	// A send or consume rule that names none of the groups the topic can be sent to (read from) is not applied
	// to it: a typo or a topic not yet on the new cluster must not blackhole producers (consumers).
	sendRule, consumeRule := false, false
	for i := range out {
		m, perm := &out[i], sourcePerm(&out[i])
		sendRule = sendRule || (p.Send != nil && perm&PermWrite != 0 && m.WriteQueueNums > 0 && p.sendsTo(m))
		consumeRule = consumeRule || (p.Consume != nil && perm&PermRead != 0 && m.ReadQueueNums > 0 && selected(p.Consume, m))
	}
	for i := range out {
		m := &out[i]
		perm := sourcePerm(m)
		served := perm
		if slices.Contains(p.Drain, m.BrokerName) || (sendRule && !p.sendsTo(m)) {
			served &^= PermWrite
		}
		if consumeRule && !selected(p.Consume, m) {
			served &^= PermRead
		}
		m.Perm, m.SourcePerm, m.Weight = served, 0, 0
		if served != perm {
			m.SourcePerm = perm
		}
		m.AckAlways = selected(p.Ack, m)
	}
	if sendRule {
		p.weigh(out)
	}
	return out
}

// sendsTo reports whether a send backend with a weight above zero (or any, when unweighted) names the member.
func (p *Policy) sendsTo(m *Member) bool {
	return slices.ContainsFunc(p.Send, func(b Backend) bool { return b.Selects(m) && (!b.Weighted || b.Weight > 0) })
}

// weigh sets the send weight of every writable member under a weighted send rule: each backend's weight split
// evenly over the writable groups it names (the first backend with a weight above zero naming a group counts).
func (p *Policy) weigh(members []Member) {
	if len(p.Send) == 0 || !p.Send[0].Weighted {
		return
	}
	owner := make([]int, len(members))
	count := make([]int, len(p.Send))
	for i := range members {
		owner[i] = -1
		if !members[i].Writable() {
			continue
		}
		if j := slices.IndexFunc(p.Send, func(b Backend) bool { return b.Weight > 0 && b.Selects(&members[i]) }); j >= 0 {
			owner[i] = j
			count[j]++
		}
	}
	for i := range members {
		if j := owner[i]; j >= 0 {
			members[i].Weight = max(1, p.Send[j].Weight*weightScale/int32(count[j]))
		}
	}
}

// policyFor returns the policy a topic follows and the others that also match it, in precedence order.
func (t *Table) policyFor(topic string) (*Policy, []*Policy) {
	var won *Policy
	var also []*Policy
	for _, p := range t.policies {
		if !p.Match.Matches(topic) {
			continue
		}
		if won == nil {
			won = p
		} else {
			also = append(also, p)
		}
	}
	return won, also
}

// PolicyStatus is what the table knows of one policy.
type PolicyStatus struct {
	// Matched is the number of topics that follow the policy.
	Matched int `json:"matched"`
	// Overridden is the number of topics the policy matches that follow an older one.
	Overridden int `json:"overridden"`
	// OverriddenBy names the policies that won those topics.
	OverriddenBy []string `json:"overriddenBy,omitempty"`
	// UnknownBackends lists backends and drained brokers that name no broker cluster or group of the model.
	UnknownBackends []string `json:"unknownBackends,omitempty"`
}

// SetPolicies replaces every policy and re-serves the topics whose policy changes. It evaluates every topic's
// match in name order, passChunk topics per hold of the read lock, so readers and writers go on meanwhile, then
// merges again, passChunk topics per hold of the write lock, only the topics whose policy changed: a policy that
// keeps its Name and Version keeps its topics untouched. Topics that arrive meanwhile follow the new policies
// already.
//
// It returns the version and the names, sorted, of the policies whose PolicyStatus counts (matched, overridden,
// overridden by) changed meanwhile: those of the topics whose policies changed, so that a reporter of statuses
// refreshes those rather than every policy. A name may be of a policy that is gone; the changes of a topic that
// arrives or leaves during the call are counted in.
func (t *Table) SetPolicies(policies []Policy) (version uint64, statusChanged []string) {
	t.policyMu.Lock()
	defer t.policyMu.Unlock()
	t.mu.RLock()
	old := t.policies
	t.mu.RUnlock()
	byName := make(map[string]*Policy, len(old)) // a map, not a search per policy: 10k policies took 0.26 s
	for _, o := range old {
		byName[o.Name] = o
	}
	ps := make([]*Policy, len(policies))
	for i := range policies {
		p := policies[i]
		ps[i] = &p
		if o := byName[p.Name]; o != nil && samePolicy(o, &p) {
			ps[i] = o // the same policy: the same pointer, so its topics are seen unchanged
		}
	}
	slices.SortStableFunc(ps, func(a, b *Policy) int {
		if a.precedes(b) {
			return -1
		}
		if b.precedes(a) {
			return 1
		}
		return 0
	})
	t.mu.Lock()
	t.policies = ps
	t.statusChanged = map[string]struct{}{}
	t.mu.Unlock()
	var changed []string
	for c := (cursor{}); !c.done; {
		t.mu.RLock()
		t.walk(&c, passChunk, func(name string, e *topicEntry) {
			if won, also := t.policyFor(name); won != e.policy || !slices.Equal(also, t.overridden[e]) {
				changed = append(changed, name)
			}
		})
		t.mu.RUnlock()
	}
	for i := 0; i < len(changed); i += passChunk {
		t.mu.Lock()
		st := &applyState{version: t.version + 1}
		for _, name := range changed[i:min(i+passChunk, len(changed))] {
			if e := t.topics[name]; e != nil {
				t.remerge(st, name, e)
			}
		}
		t.commit(st)
		t.mu.Unlock()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for name, c := range t.policyStats {
		if c.matched == 0 && c.overridden == 0 {
			delete(t.policyStats, name)
		}
	}
	statusChanged = slices.Sorted(maps.Keys(t.statusChanged))
	t.statusChanged = nil
	return t.version, statusChanged
}

// noteStatus records, while SetPolicies runs, the policies whose PolicyStatus a topic changes when it goes from
// following won0 (over also0) to following won1 (over also1). A new winner changes both winners' matched counts and
// the winner every overridden policy reports; under the same winner, only the policies that start or stop being
// overridden change. Names are compared, not pointers: a policy's new version with the same name is the same
// policy to the status.
func (t *Table) noteStatus(won0 *Policy, also0 []*Policy, won1 *Policy, also1 []*Policy) {
	if t.statusChanged == nil {
		return
	}
	note := func(ps ...*Policy) {
		for _, p := range ps {
			if p != nil {
				t.statusChanged[p.Name] = struct{}{}
			}
		}
	}
	if policyName(won0) != policyName(won1) {
		note(won0, won1)
		note(also0...)
		note(also1...)
		return
	}
	named := func(ps []*Policy, name string) bool {
		return slices.ContainsFunc(ps, func(p *Policy) bool { return p.Name == name })
	}
	for _, p := range also0 {
		if !named(also1, p.Name) {
			note(p)
		}
	}
	for _, p := range also1 {
		if !named(also0, p.Name) {
			note(p)
		}
	}
}

func policyName(p *Policy) string {
	if p == nil {
		return ""
	}
	return p.Name
}

func samePolicy(p, q *Policy) bool {
	return p.Name == q.Name && p.Version != "" && p.Version == q.Version
}

type policyCount struct {
	matched, overridden int
	by                  map[string]int
}

// setMatch records the policy a topic follows and the others that match it, overridden (kept beside the entry:
// few topics have any).
func (t *Table) setMatch(e *topicEntry, won *Policy, also []*Policy) {
	t.noteStatus(e.policy, t.overridden[e], won, also)
	e.policy = won
	if len(also) > 0 {
		t.overridden[e] = also
	} else {
		delete(t.overridden, e)
	}
}

func (t *Table) countPolicies(e *topicEntry, delta int) {
	if e.policy == nil {
		return
	}
	c := t.policyStat(e.policy.Name)
	c.matched += delta
	for _, p := range t.overridden[e] {
		o := t.policyStat(p.Name)
		o.overridden += delta
		if o.by == nil {
			o.by = map[string]int{}
		}
		if o.by[e.policy.Name] += delta; o.by[e.policy.Name] <= 0 {
			delete(o.by, e.policy.Name)
		}
	}
}

func (t *Table) policyStat(name string) *policyCount {
	c := t.policyStats[name]
	if c == nil {
		c = &policyCount{}
		t.policyStats[name] = c
	}
	return c
}

// PolicyStatus reports a policy by name.
func (t *Table) PolicyStatus(name string) PolicyStatus {
	t.mu.RLock()
	defer t.mu.RUnlock()
	var out PolicyStatus
	if c := t.policyStats[name]; c != nil {
		out.Matched, out.Overridden = c.matched, c.overridden
		for n := range c.by {
			out.OverriddenBy = append(out.OverriddenBy, n)
		}
		slices.Sort(out.OverriddenBy)
	}
	i := slices.IndexFunc(t.policies, func(p *Policy) bool { return p.Name == name })
	if i < 0 {
		return out
	}
	p := t.policies[i]
	clusters, groups := map[string]bool{}, map[string]bool{}
	for _, b := range t.merged {
		clusters[b.Cluster], groups[b.Name] = true, true
	}
	for _, rule := range [][]Backend{p.RouteQuery, p.Send, p.Consume, p.Ack} {
		for _, b := range rule {
			if b.BrokerCluster != "" && !clusters[b.BrokerCluster] {
				out.UnknownBackends = append(out.UnknownBackends, "brokerCluster "+b.BrokerCluster)
			}
			for _, n := range b.BrokerNames {
				if !groups[n] {
					out.UnknownBackends = append(out.UnknownBackends, "broker "+n)
				}
			}
		}
	}
	for _, n := range p.Drain {
		if !groups[n] {
			out.UnknownBackends = append(out.UnknownBackends, "broker "+n)
		}
	}
	out.UnknownBackends = slices.Compact(slices.SortedFunc(slices.Values(out.UnknownBackends), cmp.Compare[string]))
	return out
}

// TopicPolicy names the policy a topic follows ("" for none) and the policies that match it too but lost.
func (t *Table) TopicPolicy(topic string) (policy string, overridden []string) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	e := t.topics[topic]
	if e == nil || e.policy == nil {
		return "", nil
	}
	for _, p := range t.overridden[e] {
		overridden = append(overridden, p.Name)
	}
	return e.policy.Name, overridden
}

// PolicyNames returns the policies in precedence order.
func (t *Table) PolicyNames() []string {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := make([]string, len(t.policies))
	for i, p := range t.policies {
		out[i] = p.Name
	}
	return out
}
