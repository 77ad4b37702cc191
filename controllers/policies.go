package controllers

import (
	"slices"
	"sync"

	"github.com/rocketpilot/rocketpilot/routing"
)

// Policies holds the policies (TopicRoutes) and bindings (TopicBindings) of every source of resources and writes
// them into the routing table whenever one of them changes.
type Policies struct {
	table *routing.Table

	mu       sync.Mutex
	routes   map[string]versioned[routing.Policy]
	bindings map[string]versioned[routing.Binding]
	seen     map[string]string // kind/key → the last version reconciled, valid or not
}

type versioned[T any] struct {
	version string
	value   T
}

// NewPolicies returns an empty Policies over table.
func NewPolicies(table *routing.Table) *Policies {
	return &Policies{table: table, routes: map[string]versioned[routing.Policy]{}, bindings: map[string]versioned[routing.Binding]{},
		seen: map[string]string{}}
}

// SetRoute records a TopicRoute's policy at a version (its generation, or a hash of its file); the same version
// again changes nothing. A nil policy removes it. It returns the other TopicRoutes whose status (matched topics,
// conflicts) the change changed: those that share topics with this one, before or after it.
func (p *Policies) SetRoute(key, version string, policy *routing.Policy) (others []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if policy != nil {
		policy.Version = version
	}
	if !set(p.routes, key, version, policy) {
		return nil
	}
	_, changed := p.table.SetPolicies(values(p.routes))
	return slices.DeleteFunc(changed, func(k string) bool { return k == key })
}

// SetBinding records a TopicBinding's binding, like SetRoute.
func (p *Policies) SetBinding(key, version string, binding *routing.Binding) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if set(p.bindings, key, version, binding) {
		p.table.SetBindings(values(p.bindings))
	}
}

// noteReconciled records that a resource was reconciled at a version, whether it was valid or not.
func (p *Policies) noteReconciled(kind, key, version string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.seen[kind+"/"+key] = version
}

// Reconciled reports whether a resource was reconciled at a version.
func (p *Policies) Reconciled(kind, key, version string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seen[kind+"/"+key] == version
}

// Keys returns the keys of the recorded TopicRoutes and TopicBindings.
func (p *Policies) Keys() (routes, bindings []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k := range p.routes {
		routes = append(routes, k)
	}
	for k := range p.bindings {
		bindings = append(bindings, k)
	}
	return routes, bindings
}

// Binding returns a recorded binding.
func (p *Policies) Binding(key string) (routing.Binding, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	b, ok := p.bindings[key]
	return b.value, ok
}

func set[T any](m map[string]versioned[T], key, version string, v *T) (changed bool) {
	old, had := m[key]
	if v == nil {
		delete(m, key)
		return had
	}
	if had && old.version == version {
		return false
	}
	m[key] = versioned[T]{version: version, value: *v}
	return true
}

func values[T any](m map[string]versioned[T]) []T {
	out := make([]T, 0, len(m))
	for _, v := range m {
		out = append(out, v.value)
	}
	return out
}
