package routing

import "slices"

// Policies returns a copy of the policies the table holds, in precedence order (the order a topic several match
// is decided in: oldest first, then by name). For reports: analysis reads a policy's rules from here.
func (t *Table) Policies() []Policy {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := make([]Policy, len(t.policies))
	for i, p := range t.policies {
		out[i] = *p
	}
	return out
}

// Bindings returns a copy of the bindings the table holds.
func (t *Table) Bindings() []Binding {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return slices.Clone(t.bindings)
}
