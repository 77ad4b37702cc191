package controllers

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/rocketpilot/rocketpilot/crds/v1alpha1"
	"github.com/rocketpilot/rocketpilot/nameserver/watcher"
	"github.com/rocketpilot/rocketpilot/routing"
)

// keyOf names an object in the model and in reports: "namespace/name".
func keyOf(m metav1.Object) string { return m.GetNamespace() + "/" + m.GetName() }

// PolicyOf converts a TopicRoute into the routing policy it asks for. The schema and CEL rules have been checked
// already; what they cannot check (the regular expression compiles) fails here with a reason.
func PolicyOf(tr *v1alpha1.TopicRoute) (routing.Policy, error) {
	s := &tr.Spec
	p := routing.Policy{
		Name:    keyOf(tr),
		Created: tr.CreationTimestamp.Time,
		Match:   routing.TopicMatch{Exact: slices.Clone(s.Topics.Exact), Prefix: slices.Clone(s.Topics.Prefix)},
		Ordered: s.Ordered,
	}
	if s.Topics.Regex != "" {
		re, err := regexp.Compile("^(?:" + s.Topics.Regex + ")$")
		if err != nil {
			return routing.Policy{}, fmt.Errorf("spec.topics.regex: %w", err)
		}
		p.Match.Regex = re
	}
	if s.Send != nil {
		p.Send = backends(s.Send.Backends)
	}
	if s.Consume != nil {
		p.Consume = backends(s.Consume.Backends)
	}
	if s.Ack != nil {
		p.Ack = backends(s.Ack.Backends)
	}
	if s.RouteQuery != nil {
		p.RouteQuery = backends(s.RouteQuery.Backends)
	}
	if s.Drain != nil {
		p.Drain = slices.Clone(s.Drain.BrokerNames)
	}
	if s.Pop != nil {
		var invisible time.Duration // the schema's default (60s) when unset
		if s.Pop.InvisibleTime != nil {
			invisible = s.Pop.InvisibleTime.Duration
		}
		p.Pop = routing.NewPopPolicy(s.Pop.ConsumerGroups, invisible)
		p.Pop.Ordered = s.Ordered
	}
	return p, nil
}

func backends(in []v1alpha1.Backend) []routing.Backend {
	out := make([]routing.Backend, len(in))
	for i, b := range in {
		out[i] = routing.Backend{BrokerCluster: b.BrokerCluster, BrokerNames: slices.Clone(b.BrokerNames)}
		if b.Weight != nil {
			out[i].Weight, out[i].Weighted = *b.Weight, true
		}
	}
	return out
}

// BindingOf converts a TopicBinding: a pod selector selects proxies of the binding's namespace by the labels in
// their node metadata, node id patterns select proxies of any namespace by id.
func BindingOf(tb *v1alpha1.TopicBinding) (routing.Binding, error) {
	b := routing.Binding{Name: keyOf(tb), Topics: slices.Clone(tb.Spec.Topics), ConsumerGroups: slices.Clone(tb.Spec.ConsumerGroups),
		Strict: tb.Spec.Strict}
	switch {
	case tb.Spec.PodSelector != nil:
		sel, err := metav1.LabelSelectorAsSelector(tb.Spec.PodSelector)
		if err != nil {
			return routing.Binding{}, fmt.Errorf("spec.podSelector: %w", err)
		}
		ns := tb.Namespace
		b.Selects = func(p routing.Proxy) bool { return p.Namespace == ns && sel.Matches(labels.Set(p.Labels)) }
	default:
		var res []*regexp.Regexp
		for _, pattern := range tb.Spec.NodeIDs {
			res = append(res, globRegexp(pattern))
		}
		b.Selects = func(p routing.Proxy) bool {
			return slices.ContainsFunc(res, func(re *regexp.Regexp) bool { return re.MatchString(p.ID) })
		}
	}
	return b, nil
}

// globRegexp turns a pattern where '*' matches any run of characters into an anchored regular expression.
func globRegexp(pattern string) *regexp.Regexp {
	parts := strings.Split(pattern, "*")
	for i, p := range parts {
		parts[i] = regexp.QuoteMeta(p)
	}
	return regexp.MustCompile("^" + strings.Join(parts, ".*") + "$")
}

// SourceSpec is what a NameServerSource asks of its watcher.
type SourceSpec struct {
	Addrs      []string
	Interval   time.Duration
	Mode       watcher.Mode
	FrameLimit int
	Topics     []string
}

// SourceSpecOf converts a NameServerSource whose addresses are known (its own, or its NameService's).
func SourceSpecOf(nss *v1alpha1.NameServerSource, addrs []string) SourceSpec {
	spec := SourceSpec{Addrs: slices.Sorted(slices.Values(addrs)), Mode: watcher.ModeAllTopics, FrameLimit: int(nss.Spec.FrameLimit),
		Topics: slices.Clone(nss.Spec.Topics)}
	if nss.Spec.PollInterval != nil {
		spec.Interval = nss.Spec.PollInterval.Duration
	}
	if nss.Spec.Discovery == v1alpha1.DiscoveryTopicsInUse {
		spec.Mode = watcher.ModeInUse
	}
	return spec
}

func (s SourceSpec) equal(o SourceSpec) bool {
	return slices.Equal(s.Addrs, o.Addrs) && s.Interval == o.Interval && s.Mode == o.Mode && s.FrameLimit == o.FrameLimit &&
		slices.Equal(s.Topics, o.Topics)
}
