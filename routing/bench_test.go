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
