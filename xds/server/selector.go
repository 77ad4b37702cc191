package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/rocketpilot/rocketpilot/routing"
)

// The topic list's label selector (GET /api/v1/topics?labelSelector=): Kubernetes' syntax (=, ==, !=, in, notin,
// KEY, !KEY; comma-separated, all holding), parsed by k8s.io/apimachinery's labels, over these keys of a topic:
//
//	broker     the broker groups of its route (several: the topic has each)
//	brokerSet  the hash of its broker set
//	cluster    the broker clusters of its groups, and the served cluster (the CLUSTER column): either name holds
//	policy     the TopicRoute it follows, NAMESPACE/NAME (none when it follows none)
//
// A key with several values (broker, cluster) holds for =, == and in when one of its values does, and for != and
// notin when none is excluded: `broker!=broker-a` is the topics broker-a does not serve.
var topicSelectorKeys = []string{"broker", "brokerSet", "cluster", "policy"}

// TopicSelector is a parsed label selector over topics (ParseTopicSelector).
type TopicSelector struct {
	text   string                      // as the parser renders it: the answer echoes it
	set    []requirement               // the requirements on the broker set's keys (broker, brokerSet, cluster)
	policy []requirement               // the requirements on policy
	sets   map[*routing.BrokerSet]bool // the broker sets' results for set, cached: few sets serve many topics
	// clusterName is the served cluster's name of a broker set.
	clusterName func(*routing.BrokerSet) string
}

// requirement is one requirement of a selector: a key, an operator and its values.
type requirement struct {
	key    string
	op     selection.Operator
	values []string
}

// parseTopicSelector parses a labelSelector; an empty one selects every topic (nil).
func parseTopicSelector(s string, clusterName func(*routing.BrokerSet) string) (*TopicSelector, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	reqs, text, err := parseRequirements(s)
	if err != nil {
		return nil, err
	}
	sel := &TopicSelector{text: text, sets: map[*routing.BrokerSet]bool{}, clusterName: clusterName}
	for _, r := range reqs {
		switch {
		case r.op == selection.GreaterThan || r.op == selection.LessThan:
			return nil, fmt.Errorf("%s: a topic's keys are names, not numbers: use =, !=, in, notin, KEY or !KEY", r.op)
		case r.key == "policy":
			sel.policy = append(sel.policy, r)
		case slices.Contains(topicSelectorKeys, r.key):
			sel.set = append(sel.set, r)
		default:
			return nil, fmt.Errorf("unknown key %q: a topic's keys are %s", r.key, strings.Join(topicSelectorKeys, ", "))
		}
	}
	return sel, nil
}

// parseRequirements parses a selector with Kubernetes' parser, and renders it back as text. Kubernetes' label
// values allow neither the slash of a policy (NAMESPACE/NAME) nor the % and | of RocketMQ's names, nor more than 63
// characters: a word the parser would refuse as a value is given to it as a placeholder, and put back after.
func parseRequirements(s string) (reqs []requirement, text string, err error) {
	var words []string // the words replaced: placeholder i is words[i]
	placeholder := func(i int) string { return fmt.Sprintf("rocketpilot-word-%d-x", i) }
	var b strings.Builder
	for i := 0; i < len(s); {
		j := i
		for j < len(s) && !strings.ContainsRune(" \t\r\n=!(),<>", rune(s[j])) {
			j++
		}
		if j == i { // a separator or an operator, as is
			b.WriteByte(s[i])
			i++
			continue
		}
		if w := s[i:j]; len(validation.IsValidLabelValue(w)) > 0 {
			b.WriteString(placeholder(len(words)))
			words = append(words, w)
		} else {
			b.WriteString(w)
		}
		i = j
	}
	put := func(w string) string {
		for i, orig := range words {
			if w == placeholder(i) {
				return orig
			}
		}
		return w
	}
	parsed, err := labels.ParseToRequirements(b.String())
	if err != nil {
		for i, orig := range words { // the message quotes the selector as given
			err = errors.New(strings.ReplaceAll(err.Error(), placeholder(i), orig))
		}
		return nil, "", err
	}
	var texts []string
	for _, r := range parsed {
		req := requirement{key: put(r.Key()), op: r.Operator()}
		for _, v := range r.ValuesUnsorted() {
			req.values = append(req.values, put(v))
		}
		reqs = append(reqs, req)
		texts = append(texts, req.String())
	}
	return reqs, strings.Join(texts, ","), nil
}

// String renders a requirement as Kubernetes does.
func (r requirement) String() string {
	switch r.op {
	case selection.Exists:
		return r.key
	case selection.DoesNotExist:
		return "!" + r.key
	case selection.In, selection.NotIn:
		return r.key + " " + string(r.op) + " (" + strings.Join(r.values, ",") + ")"
	}
	return r.key + string(r.op) + strings.Join(r.values, ",")
}

// needsPolicy reports whether the selector reads a topic's policy.
func (s *TopicSelector) needsPolicy() bool { return s != nil && len(s.policy) > 0 }

// matches reports whether a topic following policy ("" for none) is selected.
func (s *TopicSelector) matches(t *routing.Topic, policy string) bool {
	if s == nil {
		return true
	}
	for _, r := range s.policy {
		var values []string
		if policy != "" {
			values = []string{policy}
		}
		if !r.matches(values) {
			return false
		}
	}
	if len(s.set) == 0 {
		return true
	}
	ok, seen := s.sets[t.BrokerSet]
	if !seen {
		ok = s.matchSet(t.BrokerSet)
		s.sets[t.BrokerSet] = ok
	}
	return ok
}

func (s *TopicSelector) matchSet(set *routing.BrokerSet) bool {
	if set == nil {
		set = &routing.BrokerSet{}
	}
	for _, r := range s.set {
		var values []string
		switch r.key {
		case "broker":
			for _, m := range set.Members {
				values = append(values, m.BrokerName)
			}
		case "brokerSet":
			values = []string{set.Hash}
		case "cluster":
			values = append(set.Clusters(), s.clusterName(set))
		}
		if !r.matches(values) {
			return false
		}
	}
	return true
}

// matches evaluates the requirement on a key with values (none: the key is absent): =, == and in hold when one
// value is among the requirement's, != and notin when none is.
func (r requirement) matches(values []string) bool {
	switch r.op {
	case selection.Exists:
		return len(values) > 0
	case selection.DoesNotExist:
		return len(values) == 0
	}
	found := slices.ContainsFunc(values, func(v string) bool { return slices.Contains(r.values, v) })
	if r.op == selection.NotIn || r.op == selection.NotEquals {
		return !found
	}
	return found
}

// listPage is how many names the topic list reads at a time, under the table's read lock: a long list (or a
// selector matching few topics) is read a page at a time, so that writes go on in between.
const listPage = 10_000

// selectTopics returns the topics under prefix, after the name after ("" from the first), that sel selects: at most
// limit (0: all), and whether more are selected after the last. The table keeps its names sorted: a page costs a
// binary search and the page, never a pass over every topic, but for a selector matching few of them. A scan
// stops when ctx ends (the client gave up): it would only cost the writers it shares the table with.
func (a *Admin) selectTopics(ctx context.Context, prefix, after string, sel *TopicSelector, limit int) (out []TopicSummary, more bool) {
	out = []TopicSummary{}
	for ctx.Err() == nil {
		n := listPage
		if sel == nil && limit > 0 {
			n = min(n, limit-len(out)+1) // every name is selected: one more tells whether there are more
		}
		names, _ := a.Table.TopicNames(prefix, after, n)
		for i, t := range a.Table.Topics(names) {
			if t == nil { // gone since its name was read
				continue
			}
			policy := ""
			if sel.needsPolicy() {
				policy, _ = a.Table.TopicPolicy(names[i])
			}
			if !sel.matches(t, policy) {
				continue
			}
			if limit > 0 && len(out) == limit {
				return out, true
			}
			out = append(out, a.summarize(t))
		}
		if len(names) < n {
			return out, false
		}
		after = names[len(names)-1]
	}
	return out, false
}

// ParseTopicSelector parses a label selector over topics (GET /api/v1/topics?labelSelector=): nil for "".
func (a *Admin) ParseTopicSelector(s string) (*TopicSelector, error) {
	return parseTopicSelector(s, a.Cache.ClusterName)
}
