package routing

import (
	"slices"
	"strings"
)

// indexBlock is the most names one block of a nameIndex holds. An insert or delete moves at most a block's worth
// of string headers (8 KiB); a count walks one length per block (about 2,600 blocks at a million topics).
const indexBlock = 512

// nameIndex keeps the table's topic names sorted, in blocks, so that a page of names after a name or under a
// prefix costs a binary search and the page, a prefix's count a pass over the blocks' lengths, and a pass over
// every topic can let go of the table's lock between chunks and resume where it stopped. It costs a string header
// per topic (the string's bytes are the map key's) and a block's slack. Every pair of neighbouring blocks holds
// more than indexBlock/2 names, so there are fewer than 4n/indexBlock+1 blocks.
type nameIndex struct {
	blocks [][]string // each sorted and not empty; every name of a block sorts before every name of the next
	n      int
}

// pos is a position in the index: block b, name i of it. The end is {len(blocks), 0}.
type pos struct{ b, i int }

func (p pos) before(q pos) bool { return p.b < q.b || p.b == q.b && p.i < q.i }

// seek returns the position of the first name >= name.
func (x *nameIndex) seek(name string) pos {
	b, _ := slices.BinarySearchFunc(x.blocks, name, func(blk []string, s string) int {
		return strings.Compare(blk[len(blk)-1], s)
	})
	if b == len(x.blocks) {
		return pos{b, 0}
	}
	i, _ := slices.BinarySearch(x.blocks[b], name)
	return pos{b, i}
}

// after returns the position of the first name > name.
func (x *nameIndex) after(name string) pos {
	p := x.seek(name)
	if p.b < len(x.blocks) && x.blocks[p.b][p.i] == name {
		p = x.next(p)
	}
	return p
}

func (x *nameIndex) next(p pos) pos {
	if p.i+1 < len(x.blocks[p.b]) {
		return pos{p.b, p.i + 1}
	}
	return pos{p.b + 1, 0}
}

func (x *nameIndex) end(p pos) bool { return p.b >= len(x.blocks) }

func (x *nameIndex) at(p pos) string { return x.blocks[p.b][p.i] }

// count returns the number of names from p (included) to q (excluded), p <= q.
func (x *nameIndex) count(p, q pos) int {
	n := q.i - p.i
	for b := p.b; b < q.b; b++ {
		n += len(x.blocks[b])
	}
	return n
}

// insert adds a name the index does not hold.
func (x *nameIndex) insert(name string) {
	x.n++
	if len(x.blocks) == 0 {
		x.blocks = [][]string{append(make([]string, 0, indexBlock), name)}
		return
	}
	p := x.seek(name)
	if p.b == len(x.blocks) { // after every name: at the end of the last block
		p = pos{p.b - 1, len(x.blocks[p.b-1])}
	}
	blk := x.blocks[p.b]
	if len(blk) < indexBlock {
		x.blocks[p.b] = slices.Insert(blk, p.i, name)
		return
	}
	// A full block splits: in halves, or, for a name after the last one (names arriving in order), into the full
	// block and a new one, so that a table filled in order keeps its blocks full.
	if p.b == len(x.blocks)-1 && p.i == len(blk) {
		x.blocks = append(x.blocks, append(make([]string, 0, indexBlock), name))
		return
	}
	half := len(blk) / 2
	right := append(make([]string, 0, indexBlock), blk[half:]...)
	clear(blk[half:])
	left := blk[:half]
	if p.i <= half {
		left = slices.Insert(left, p.i, name)
	} else {
		right = slices.Insert(right, p.i-half, name)
	}
	x.blocks[p.b] = left
	x.blocks = slices.Insert(x.blocks, p.b+1, right)
}

// delete removes a name; it does nothing when the index does not hold it.
func (x *nameIndex) delete(name string) {
	p := x.seek(name)
	if x.end(p) || x.at(p) != name {
		return
	}
	x.n--
	blk := slices.Delete(x.blocks[p.b], p.i, p.i+1)
	x.blocks[p.b] = blk
	b := p.b
	if len(blk) == 0 {
		x.blocks = slices.Delete(x.blocks, b, b+1)
		return
	}
	// Keep every pair of neighbours above half a block: merge the shrunk block into a small neighbour.
	if b > 0 && len(x.blocks[b-1])+len(blk) <= indexBlock/2 {
		x.merge(b - 1)
		b--
	}
	if b+1 < len(x.blocks) && len(x.blocks[b])+len(x.blocks[b+1]) <= indexBlock/2 {
		x.merge(b)
	}
}

// merge appends block b+1 to block b.
func (x *nameIndex) merge(b int) {
	x.blocks[b] = append(x.blocks[b], x.blocks[b+1]...)
	x.blocks = slices.Delete(x.blocks, b+1, b+2)
}

// prefixEnd returns the least string above every string that starts with prefix, and false when there is none
// (an empty prefix, or one of 0xff bytes only).
func prefixEnd(prefix string) (string, bool) {
	for i := len(prefix) - 1; i >= 0; i-- {
		if prefix[i] != 0xff {
			return prefix[:i] + string([]byte{prefix[i] + 1}), true
		}
	}
	return "", false
}

// span returns the positions of the first name that starts with prefix and of the first name after them.
func (x *nameIndex) span(prefix string) (from, to pos) {
	from, to = x.seek(prefix), pos{len(x.blocks), 0}
	if end, ok := prefixEnd(prefix); ok {
		to = x.seek(end)
	}
	return from, to
}
