// Package analyze finds what is wrong with a routing model and the resources that shape it: drains that leave
// topics without a writable broker, TopicRoutes that silently lose topics to older ones, send weights that reach
// no writable master, TopicBindings that select nothing or name unknown topics, documents the file source
// rejected, and NameServers that do not answer. The control plane runs it over its live model (the admin API's
// GET /api/v1/analyze); rocketctl analyze -f runs it over a model built offline from files. Each Problem names
// the object, the field and what to do.
package analyze

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/rocketpilot/rocketpilot/nameserver/watcher"
	"github.com/rocketpilot/rocketpilot/routing"
)

// Severity says how bad a problem is: an Error breaks traffic or a resource, a Warning is likely not what was
// meant, Info is worth knowing.
type Severity string

const (
	Error   Severity = "Error"
	Warning Severity = "Warning"
	Info    Severity = "Info"
)

// Problem is one finding.
type Problem struct {
	Severity  Severity `json:"severity"`
	Kind      string   `json:"kind"`
	Namespace string   `json:"namespace,omitempty"`
	Name      string   `json:"name"`
	// Field is the path of the field at fault ("spec.drain.brokerNames[0]"), empty when the object is.
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
	// Fix says what to do.
	Fix string `json:"fix"`
}

// Object is the problem's object as kind/namespace/name (kind/name without a namespace).
func (p Problem) Object() string {
	if p.Namespace == "" {
		return p.Kind + "/" + p.Name
	}
	return p.Kind + "/" + p.Namespace + "/" + p.Name
}

// Document is one document of a file source, as GET /api/v1/resources lists it (controllers.FileResourceStatus).
type Document struct {
	File      string `json:"file"`
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Accepted  bool   `json:"accepted"`
	Error     string `json:"error,omitempty"`
}

// Input is what an analysis looks at.
type Input struct {
	// Table is the routing model, with the TopicRoutes' policies and the TopicBindings applied.
	Table *routing.Table
	// TopicsKnown says the table holds what NameServers report (live, or offline with a NameServer dump):
	// without it, checks that need topics are left out.
	TopicsKnown bool
	// ProxiesKnown says the table's connected proxies are real (live): only then is a binding that selects none
	// reported.
	ProxiesKnown bool
	// Sources are the NameServer watchers' statuses (live).
	Sources []watcher.Status
	// Documents are the file source's documents; the rejected ones are problems.
	Documents []Document
}

// examples is how many topics a message names.
const examples = 3

// Run returns every problem found, errors first, then by object and field.
func Run(in Input) []Problem {
	var out []Problem
	out = append(out, documents(in.Documents)...)
	out = append(out, sources(in.Sources)...)
	policies := in.Table.Policies()
	if in.TopicsKnown {
		out = append(out, topics(in.Table, policies)...)
	} else {
		out = append(out, staticConflicts(policies)...)
	}
	out = append(out, bindings(in, in.Table.Bindings())...)
	Sort(out)
	return out
}

// Sort orders problems: errors first, then warnings, then infos; within a severity by object and field.
func Sort(ps []Problem) {
	rank := map[Severity]int{Error: 0, Warning: 1, Info: 2}
	slices.SortStableFunc(ps, func(a, b Problem) int {
		return cmp.Or(cmp.Compare(rank[a.Severity], rank[b.Severity]), cmp.Compare(a.Kind, b.Kind),
			cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name), cmp.Compare(a.Field, b.Field),
			cmp.Compare(a.Message, b.Message))
	})
}

// Errors counts the problems of severity Error.
func Errors(ps []Problem) int {
	n := 0
	for _, p := range ps {
		if p.Severity == Error {
			n++
		}
	}
	return n
}

// splitName splits "namespace/name".
func splitName(key string) (namespace, name string) {
	if ns, n, ok := strings.Cut(key, "/"); ok {
		return ns, n
	}
	return "", key
}

func onTopicRoute(policy string, sev Severity, field, msg, fix string) Problem {
	ns, n := splitName(policy)
	return Problem{Severity: sev, Kind: "TopicRoute", Namespace: ns, Name: n, Field: field, Message: msg, Fix: fix}
}

// invalidField finds the first field path an API server's message names ("spec.x[0]: Invalid value: ...").
var invalidField = regexp.MustCompile(`(?:^|: |\[)((?:spec|metadata)(?:\.[A-Za-z0-9_]+|\[\d+\])*)(?:: |, )`)

// documents reports the rejected documents of a file source.
func documents(docs []Document) []Problem {
	var out []Problem
	for _, d := range docs {
		if d.Accepted {
			continue
		}
		msg := d.Error
		if _, rest, ok := strings.Cut(msg, " is invalid: "); ok { // the object is named already
			msg = rest
		}
		p := Problem{Severity: Error, Kind: d.Kind, Namespace: d.Namespace, Name: d.Name,
			Message: "rejected: " + msg,
			Fix:     "correct the document in " + d.File + " (the resources the file last defined validly are served meanwhile)"}
		if p.Kind == "" {
			p.Kind, p.Namespace, p.Name = "File", "", d.File
		}
		if m := invalidField.FindStringSubmatch(d.Error); m != nil {
			p.Field = m[1]
		}
		out = append(out, p)
	}
	return out
}

// sources reports NameServers that do not answer and sources not synced.
func sources(statuses []watcher.Status) []Problem {
	var out []Problem
	for _, s := range statuses {
		p := Problem{Kind: "NameServerSource"}
		if key, ok := strings.CutPrefix(s.Source, "nss:"); ok {
			p.Namespace, p.Name = splitName(key)
		} else {
			p.Kind, p.Name = "Flag", "--"+s.Source
		}
		down := 0
		for i, a := range s.NameServers {
			if a.Reachable {
				continue
			}
			down++
			q := p
			q.Severity, q.Field = Warning, fmt.Sprintf("spec.addresses[%d]", i)
			if p.Kind == "Flag" {
				q.Field = ""
			}
			q.Message = fmt.Sprintf("NameServer %s does not answer: %s", a.Addr, orUnknown(a.LastError))
			q.Fix = "check that a NameServer listens on " + a.Addr + " and is reachable from the control plane, or remove the address"
			out = append(out, q)
		}
		if n := len(s.NameServers); n > 0 && down == n {
			q := p
			q.Severity = Error
			q.Message = fmt.Sprintf("none of its %s answers: the routes it learned last are served, and nothing new is learned", Count(n, "NameServer"))
			if !s.Synced {
				q.Message = fmt.Sprintf("none of its %s answers and it never synced: it contributes no routes", Count(n, "NameServer"))
			}
			q.Fix = "fix the addresses or the network path to the NameServers"
			out = append(out, q)
		} else if !s.Synced {
			q := p
			q.Severity, q.Message = Warning, "not synced yet: its first poll of the NameServers is not done"
			q.Fix = "wait for the first sync; if it lasts, check the NameServers' answers (rocketctl get sources)"
			out = append(out, q)
		}
	}
	return out
}

// Count says n things: "1 topic", "2 topics".
func Count(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
}

func orUnknown(s string) string {
	if s == "" {
		return "no answer yet"
	}
	return s
}

// finding gathers the topics one check hits for one policy field.
type finding struct {
	count  int
	topics []string
	extra  string // a detail of the first hit
}

func (f *finding) add(topic, extra string) {
	f.count++
	if len(f.topics) < examples {
		f.topics = append(f.topics, topic)
	}
	if f.extra == "" {
		f.extra = extra
	}
}

func (f *finding) which() string {
	s := strings.Join(quoteAll(f.topics), ", ")
	if f.count > len(f.topics) {
		s += fmt.Sprintf(" and %d more", f.count-len(f.topics))
	}
	return s
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = fmt.Sprintf("%q", s)
	}
	return out
}

// topics walks the served topics once: drains that leave a topic no writable broker, send weights that reach no
// writable master, and topics a TopicRoute matches but lost to an older one.
func topics(t *routing.Table, policies []routing.Policy) []Problem {
	byName := map[string]*routing.Policy{}
	for i := range policies {
		byName[policies[i].Name] = &policies[i]
	}
	type key struct{ policy, field string }
	drained, weights, lost := map[key]*finding{}, map[key]*finding{}, map[string]map[string]*finding{}
	hit := func(m map[key]*finding, k key) *finding {
		if m[k] == nil {
			m[k] = &finding{}
		}
		return m[k]
	}
	t.Range(func(topic *routing.Topic) bool { // fn runs without the table's lock
		name := topic.Name
		won, overridden := t.TopicPolicy(name)
		for _, o := range overridden {
			if lost[o] == nil {
				lost[o] = map[string]*finding{}
			}
			if lost[o][won] == nil {
				lost[o][won] = &finding{}
			}
			lost[o][won].add(name, "")
		}
		p := byName[won]
		if p == nil {
			return true
		}
		members := topic.BrokerSet.Members
		// A drain that takes the last writable group: no member is writable as served, and some drained member
		// was writable at its source.
		if len(p.Drain) > 0 && !slices.ContainsFunc(members, func(m routing.Member) bool { return m.Writable() }) {
			for i, d := range p.Drain {
				j := slices.IndexFunc(members, func(m routing.Member) bool { return m.BrokerName == d })
				if j >= 0 && members[j].SourcePerm&routing.PermWrite != 0 && members[j].WriteQueueNums > 0 {
					hit(drained, key{won, fmt.Sprintf("spec.drain.brokerNames[%d]", i)}).add(name, d)
				}
			}
		}
		// A weighted send backend that names groups of the topic but no writable master among them.
		for i, b := range p.Send {
			if !b.Weighted || b.Weight == 0 {
				continue
			}
			var named []string
			ok := false
			for _, m := range members {
				if b.Selects(&m) {
					named = append(named, m.BrokerName)
					ok = ok || (m.Writable() && m.Master() != "")
				}
			}
			if len(named) > 0 && !ok {
				hit(weights, key{won, fmt.Sprintf("spec.send.backends[%d]", i)}).add(name, strings.Join(named, ","))
			}
		}
		return true
	})
	var out []Problem
	for k, f := range drained {
		out = append(out, onTopicRoute(k.policy, Error, k.field,
			fmt.Sprintf("draining %s leaves %s with no writable broker group (%s): producers cannot send them", f.extra, Count(f.count, "topic"), f.which()),
			"keep a writable group out of spec.drain for these topics (or add one to the cluster first), or drain the groups one at a time"))
	}
	for k, f := range weights {
		p := byName[k.policy]
		var w int32
		var what string
		if i := indexOf(k.field); i >= 0 && i < len(p.Send) {
			w, what = p.Send[i].Weight, backendName(p.Send[i])
		}
		out = append(out, onTopicRoute(k.policy, Warning, k.field,
			fmt.Sprintf("weight %d goes to %s, which has no writable master for %s (%s; groups %s): that share of their sends goes to the other backends, or the send rule is not applied",
				w, what, Count(f.count, "topic"), f.which(), f.extra),
			"bring up the master or give the groups write perm, or set this backend's weight to 0"))
	}
	for loser, by := range lost {
		for winner, f := range by {
			verb := "follow"
			if f.count == 1 {
				verb = "follows"
			}
			out = append(out, onTopicRoute(loser, Warning, "spec.topics",
				fmt.Sprintf("%s it matches %s TopicRoute %s instead (%s): a topic follows the oldest matching TopicRoute (creationTimestamp, then namespace/name; files order by name)",
					Count(f.count, "topic"), verb, winner, f.which()),
				"narrow spec.topics of one of the two so that they do not overlap, or merge the rules into one TopicRoute"))
		}
	}
	for i := range policies {
		p := &policies[i]
		for _, u := range t.PolicyStatus(p.Name).UnknownBackends {
			out = append(out, onTopicRoute(p.Name, Warning, unknownField(p, u),
				fmt.Sprintf("%s is not known to the NameServers: the rule does not apply to it", u),
				"correct the name (rocketctl get brokersets lists the groups and clusters), or create it first"))
		}
	}
	return out
}

// indexOf returns the index of a field path ending in [i], or -1.
func indexOf(field string) int {
	var i int
	if j := strings.LastIndex(field, "["); j >= 0 {
		if _, err := fmt.Sscanf(field[j:], "[%d]", &i); err == nil {
			return i
		}
	}
	return -1
}

func backendName(b routing.Backend) string {
	if b.BrokerCluster != "" {
		return "brokerCluster " + b.BrokerCluster
	}
	return "brokerNames " + strings.Join(b.BrokerNames, ",")
}

// unknownField finds the field naming an unknown backend ("brokerCluster X" or "broker X").
func unknownField(p *routing.Policy, u string) string {
	cluster, isCluster := strings.CutPrefix(u, "brokerCluster ")
	broker, _ := strings.CutPrefix(u, "broker ")
	rules := []struct {
		field string
		rule  []routing.Backend
	}{{"spec.routeQuery", p.RouteQuery}, {"spec.send", p.Send}, {"spec.consume", p.Consume}, {"spec.ack", p.Ack}}
	for _, r := range rules {
		for i, b := range r.rule {
			if isCluster && b.BrokerCluster == cluster {
				return fmt.Sprintf("%s.backends[%d].brokerCluster", r.field, i)
			}
			if j := slices.Index(b.BrokerNames, broker); !isCluster && j >= 0 {
				return fmt.Sprintf("%s.backends[%d].brokerNames[%d]", r.field, i, j)
			}
		}
	}
	if i := slices.Index(p.Drain, broker); !isCluster && i >= 0 {
		return fmt.Sprintf("spec.drain.brokerNames[%d]", i)
	}
	return ""
}

// staticConflicts finds, without topics, the exact topic names a TopicRoute lists that an earlier one (in
// precedence order) matches too.
func staticConflicts(policies []routing.Policy) []Problem {
	var out []Problem
	for i := range policies {
		p := &policies[i]
		for j, name := range p.Match.Exact {
			for k := range i {
				if policies[k].Match.Matches(name) {
					out = append(out, onTopicRoute(p.Name, Warning, fmt.Sprintf("spec.topics.exact[%d]", j),
						fmt.Sprintf("topic %q follows TopicRoute %s, which matches it too and takes precedence (the oldest matching TopicRoute, then the lowest namespace/name; files order by name)",
							name, policies[k].Name),
						"remove the topic from one of the two TopicRoutes, or merge their rules"))
					break
				}
			}
		}
	}
	return out
}

// bindings reports TopicBindings that select no connected proxy (live) and name topics the NameServers do not
// report.
func bindings(in Input, bs []routing.Binding) []Problem {
	var out []Problem
	for _, b := range bs {
		ns, n := splitName(b.Name)
		p := Problem{Kind: "TopicBinding", Namespace: ns, Name: n}
		if in.ProxiesKnown && b.Selects != nil && in.Table.Proxies().Count(b.Selects) == 0 {
			q := p
			q.Severity, q.Field = Warning, "spec"
			q.Message = "selects no connected proxy: its topics are in no sidecar's scope"
			q.Fix = "check spec.podSelector (the pods' namespace and labels) or spec.nodeIDs against rocketctl get proxies"
			out = append(out, q)
		}
		if !in.TopicsKnown {
			continue
		}
		for i, topic := range b.Topics {
			if in.Table.Topic(topic) != nil {
				continue
			}
			q := p
			q.Severity, q.Field = Warning, fmt.Sprintf("spec.topics[%d]", i)
			q.Message = fmt.Sprintf("topic %q is unknown to the NameServers: bound sidecars get no route for it", topic)
			q.Fix = "correct the name, or create the topic on the brokers"
			out = append(out, q)
		}
	}
	return out
}

// Endpoint is an address a NameServerSource gives, for Dial.
type Endpoint struct {
	Namespace, Name string
	Index           int // in spec.addresses
	Addr            string
}

// Dial tries a TCP connection to each endpoint within timeout, all at once, and reports those nothing listens
// on (or that do not answer in time) as errors.
func Dial(ctx context.Context, endpoints []Endpoint, timeout time.Duration) []Problem {
	out := make([]*Problem, len(endpoints))
	done := make(chan struct{})
	for i, e := range endpoints {
		go func() {
			defer func() { done <- struct{}{} }()
			d := net.Dialer{Timeout: timeout}
			c, err := d.DialContext(ctx, "tcp", e.Addr)
			if err == nil {
				c.Close()
				return
			}
			out[i] = &Problem{Severity: Error, Kind: "NameServerSource", Namespace: e.Namespace, Name: e.Name,
				Field:   fmt.Sprintf("spec.addresses[%d]", e.Index),
				Message: fmt.Sprintf("nothing answers on %s within %s: %v", e.Addr, timeout, err),
				Fix:     "start the NameServer or correct the address (host:port of a NameServer, 9876 by default)"}
		}()
	}
	for range endpoints {
		<-done
	}
	var ps []Problem
	for _, p := range out {
		if p != nil {
			ps = append(ps, *p)
		}
	}
	return ps
}
