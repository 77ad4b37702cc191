// Package fuzzbytes is the fuzz targets' one source of bytes: deterministic seeds derived from a label (the same
// corpus on every machine and every run, without a random generator's version to pin), and a reader that turns the
// fuzzer's bytes into decisions.
package fuzzbytes

import "crypto/sha256"

// Seed returns n bytes derived from label: SHA-256 of the label, then of each block in turn.
func Seed(label string, n int) []byte {
	out := make([]byte, 0, n+sha256.Size)
	sum := sha256.Sum256([]byte(label))
	for len(out) < n {
		out = append(out, sum[:]...)
		sum = sha256.Sum256(sum[:])
	}
	return out[:n]
}

// Choices reads the fuzzer's bytes as decisions; once they run out every decision is 0, the plainest option.
type Choices struct{ b []byte }

// NewChoices reads decisions from b.
func NewChoices(b []byte) *Choices { return &Choices{b: b} }

// Next returns the next byte, 0 once they run out.
func (c *Choices) Next() byte {
	if len(c.b) == 0 {
		return 0
	}
	v := c.b[0]
	c.b = c.b[1:]
	return v
}

// Intn returns a number in [0, n).
func (c *Choices) Intn(n int) int {
	if n <= 1 {
		return 0
	}
	return int(c.Next()) % n
}

// Flip is true half the time, false once the bytes run out.
func (c *Choices) Flip() bool { return c.Next()&1 == 1 }

// OneIn is true one time in n, false once the bytes run out.
func (c *Choices) OneIn(n int) bool { return c.Intn(n) == n-1 }

// Left is how many bytes are left to read.
func (c *Choices) Left() int { return len(c.b) }
