package routing

import (
	"fmt"
	"testing"
)

// BenchmarkApplyOneTopic changes one topic's route in tables of growing size: the cost must not grow with N.
func BenchmarkApplyOneTopic(b *testing.B) {
	shapes := make([]*Route, 8)
	for i := range shapes {
		shapes[i] = route(
			member("c1", fmt.Sprintf("broker-%d", i), 6, 8, fmt.Sprintf("10.0.%d.1:10911", i), fmt.Sprintf("10.0.%d.2:10911", i)),
			member("c1", fmt.Sprintf("broker-%d", i+1), 6, 8, fmt.Sprintf("10.0.%d.1:10911", i+1)))
	}
	for _, n := range []int{1_000, 100_000, 1_000_000} {
		tab := NewTable()
		batch := make([]Update, 0, 10_000)
		for i := range n {
			batch = append(batch, Update{fmt.Sprintf("topic-%07d", i), shapes[i%len(shapes)]})
			if len(batch) == cap(batch) {
				tab.Apply("ns", batch...)
				batch = batch[:0]
			}
		}
		tab.Apply("ns", batch...)
		sub := tab.Subscribe()
		b.Run(fmt.Sprintf("topics=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				tab.Apply("ns", Update{fmt.Sprintf("topic-%07d", i%n), shapes[(i+1)%len(shapes)]})
				sub.TryNext()
				i++
			}
		})
		sub.Close()
	}
}

// BenchmarkSetPolicies replaces the policies of a table of 100k and 1M topics: ten prefix policies, one of which
// matches a tenth of the topics and drains a broker. A policy change re-merges every topic, so this is the cost
// of one TopicRoute change.
func BenchmarkSetPolicies(b *testing.B) {
	shapes := make([]*Route, 8)
	for i := range shapes {
		shapes[i] = route(member("c1", fmt.Sprintf("broker-%d", i), 6, 8, fmt.Sprintf("10.0.%d.1:10911", i)),
			member("c1", fmt.Sprintf("broker-%d", i+1), 6, 8, fmt.Sprintf("10.0.%d.1:10911", i+1)))
	}
	for _, n := range []int{100_000, 1_000_000} {
		tab := NewTable()
		batch := make([]Update, 0, 10_000)
		for i := range n {
			batch = append(batch, Update{fmt.Sprintf("topic-%07d", i), shapes[i%len(shapes)]})
			if len(batch) == cap(batch) {
				tab.Apply("ns", batch...)
				batch = batch[:0]
			}
		}
		tab.Apply("ns", batch...)
		policies := make([]Policy, 10)
		for i := range policies {
			// Each prefix covers a tenth of the names: "topic-0" plus one digit at 1M topics, "topic-00" plus one at 100k.
			name := fmt.Sprintf("topic-%07d", i*n/10)
			prefix := name[:len(name)-len(fmt.Sprint(n-1))+1]
			policies[i] = Policy{Name: fmt.Sprintf("ns/p%d", i), Match: TopicMatch{Prefix: []string{prefix}}}
		}
		b.Run(fmt.Sprintf("topics=%d", n), func(b *testing.B) {
			drain := []string{"broker-1"}
			for b.Loop() {
				policies[0].Drain, drain = drain, policies[0].Drain // toggled: every call changes a tenth of the topics
				tab.SetPolicies(policies)
			}
		})
	}
}
