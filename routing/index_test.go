package routing

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// check verifies the index's invariants and that it holds exactly want (sorted).
func (x *nameIndex) check(t *testing.T, want []string) {
	t.Helper()
	var all []string
	for b, blk := range x.blocks {
		if len(blk) == 0 || len(blk) > indexBlock {
			t.Fatalf("block %d holds %d names", b, len(blk))
		}
		if b > 0 && len(x.blocks[b-1])+len(blk) <= indexBlock/2 {
			t.Fatalf("blocks %d and %d hold %d names together: should have merged", b-1, b, len(x.blocks[b-1])+len(blk))
		}
		all = append(all, blk...)
	}
	if !slices.IsSorted(all) || len(slices.Compact(slices.Clone(all))) != len(all) {
		t.Fatal("names not sorted, or repeated")
	}
	if !slices.Equal(all, want) || x.n != len(want) {
		t.Fatalf("index holds %d names (n=%d), want %d", len(all), x.n, len(want))
	}
	if limit := 4*len(want)/indexBlock + 1; len(x.blocks) > limit {
		t.Fatalf("%d blocks for %d names, more than %d", len(x.blocks), len(want), limit)
	}
}

// names returns the index's names from p (included) to q (excluded).
func (x *nameIndex) between(p, q pos) []string {
	var out []string
	for ; p.before(q); p = x.next(p) {
		out = append(out, x.at(p))
	}
	return out
}

func TestNameIndexAgainstASortedSlice(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	name := func() string { // short names over a small alphabet: many share prefixes, some repeat
		b := make([]byte, 1+rng.IntN(7))
		for i := range b {
			b[i] = "ab\xffz"[rng.IntN(4)]
		}
		return string(b)
	}
	var x nameIndex
	var model []string
	for step := range 60_000 {
		n := name()
		i, held := slices.BinarySearch(model, n)
		// Grow to a few thousand names, then shrink, then grow again: splits and merges both happen.
		grow := step < 20_000 || step > 40_000
		switch {
		case !held && (grow || rng.IntN(4) == 0):
			x.insert(n)
			model = slices.Insert(model, i, n)
		case held && (!grow || rng.IntN(4) == 0):
			x.delete(n)
			model = slices.Delete(model, i, i+1)
		case !held:
			x.delete(n) // not held: nothing happens
		}
		if step%1000 == 0 {
			x.check(t, model)
		}
		if step%20 != 0 {
			continue
		}
		// Queries: seek, after, span and count against the model.
		q := name()
		if rng.IntN(2) == 0 {
			q = q[:min(len(q), rng.IntN(3))] // a short prefix, "" included
		}
		want, _ := slices.BinarySearch(model, q)
		if got := x.between(x.seek(q), pos{len(x.blocks), 0}); !slices.Equal(got, model[want:]) {
			t.Fatalf("step %d: seek(%q) gives %q, want %q", step, q, got, model[want:])
		}
		wantAfter := want
		if want < len(model) && model[want] == q {
			wantAfter++
		}
		if got := x.count(x.after(q), pos{len(x.blocks), 0}); got != len(model)-wantAfter {
			t.Fatalf("step %d: %d names after %q, want %d", step, got, q, len(model)-wantAfter)
		}
		var under []string
		for _, m := range model {
			if strings.HasPrefix(m, q) {
				under = append(under, m)
			}
		}
		from, to := x.span(q)
		if got := x.between(from, to); !slices.Equal(got, under) || x.count(from, to) != len(under) {
			t.Fatalf("step %d: names under %q: %q (count %d), want %q", step, q, got, x.count(from, to), under)
		}
	}
	x.check(t, model)
	for _, n := range slices.Clone(model) {
		x.delete(n)
	}
	x.check(t, nil)
	if len(x.blocks) != 0 {
		t.Fatalf("%d blocks left in an empty index", len(x.blocks))
	}
}

func TestNameIndexFilledInOrderKeepsBlocksFull(t *testing.T) {
	var x nameIndex
	var model []string
	for i := range 10 * indexBlock {
		n := fmt.Sprintf("topic-%07d", i)
		x.insert(n)
		model = append(model, n)
	}
	x.check(t, model)
	if len(x.blocks) != 10 {
		t.Fatalf("%d blocks for 10 blocks' worth of names inserted in order", len(x.blocks))
	}
	// Deleting every other name, then most of the rest, merges blocks as they empty.
	for i := 0; i < len(model); i++ {
		x.delete(model[i])
		model = slices.Delete(model, i, i+1)
	}
	x.check(t, model)
	for len(model) > 3 {
		x.delete(model[1])
		model = slices.Delete(model, 1, 2)
	}
	x.check(t, model)
	if len(x.blocks) != 1 {
		t.Fatalf("%d blocks for 3 names", len(x.blocks))
	}
}

func TestPrefixEnd(t *testing.T) {
	for _, c := range []struct {
		prefix, end string
		ok          bool
	}{{"", "", false}, {"a", "b", true}, {"topic-", "topic.", true}, {"a\xff", "b", true}, {"\xff\xff", "", false}} {
		if end, ok := prefixEnd(c.prefix); end != c.end || ok != c.ok {
			t.Errorf("prefixEnd(%q) = %q, %v; want %q, %v", c.prefix, end, ok, c.end, c.ok)
		}
	}
}
