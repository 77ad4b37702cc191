package routing

import (
	"slices"
	"sync"
)

// Proxy is a connected xDS node as bindings see it: its id and, when its node metadata says so, its pod's
// namespace and labels.
type Proxy struct {
	ID        string
	Namespace string
	Labels    map[string]string
}

// Binding says which proxies use which topics and consumer groups (a TopicBinding). A bound proxy's scope —
// the route table an Envoy sidecar holds — is the union of its bindings' topics.
type Binding struct {
	// Name identifies the binding in reports ("namespace/name").
	Name string
	// Selects reports whether the binding applies to a proxy.
	Selects func(Proxy) bool
	Topics  []string
	// ConsumerGroups bind their retry topics (RetryTopic).
	ConsumerGroups []string
	// Strict makes the binding an access boundary for the proxies it selects: they may subscribe only to the
	// topics their bindings grant (Grants).
	Strict bool
}

// RetryTopic is the topic a consumer group's messages are retried on.
func RetryTopic(group string) string { return "%RETRY%" + group }

// SetBindings replaces every binding. Consumers of the change set (ChangeSet.Scopes) re-scope their proxies.
func (t *Table) SetBindings(bindings []Binding) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.bindings = slices.Clone(bindings)
	st := &applyState{version: t.version + 1, scopes: true}
	t.commit(st)
	return t.version
}

// Bound returns the topics bound to a proxy, sorted and without duplicates.
func (t *Table) Bound(p Proxy) []string {
	out, _ := t.Grants(p)
	return out
}

// Grants returns the topics bound to a proxy, sorted and without duplicates, and whether a strict binding selects
// it: then those are the only topics it may subscribe to.
func (t *Table) Grants(p Proxy) (topics []string, strict bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	for _, b := range t.bindings {
		if b.Selects == nil || !b.Selects(p) {
			continue
		}
		strict = strict || b.Strict
		topics = append(topics, b.Topics...)
		for _, g := range b.ConsumerGroups {
			topics = append(topics, RetryTopic(g))
		}
	}
	slices.Sort(topics)
	return slices.Compact(topics), strict
}

// Proxies is the set of proxies connected to the xDS server, which the server registers and controllers count
// (a binding's bound proxies).
func (t *Table) Proxies() *Proxies { return t.proxies }

// Proxies counts connected proxies.
type Proxies struct {
	mu   sync.Mutex
	next uint64
	live map[uint64]Proxy
}

func newProxies() *Proxies { return &Proxies{live: make(map[uint64]Proxy)} }

// Connect records a connected proxy until the returned release function is called (once; later calls do nothing).
func (p *Proxies) Connect(proxy Proxy) (release func()) {
	p.mu.Lock()
	p.next++
	id := p.next
	p.live[id] = proxy
	p.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			p.mu.Lock()
			delete(p.live, id)
			p.mu.Unlock()
		})
	}
}

// Count returns how many connected proxies, counted once per node id, match.
func (p *Proxies) Count(match func(Proxy) bool) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	ids := map[string]struct{}{}
	for _, proxy := range p.live {
		if match(proxy) {
			ids[proxy.ID] = struct{}{}
		}
	}
	return len(ids)
}
