package fuzzbytes

import (
	"bytes"
	"encoding/hex"
	"testing"
)

// Seeds are stable: the same label gives the same bytes on every run and machine (a changed corpus would make the
// seed-coverage tests of the fuzz targets measure something else), and different labels differ.
func TestSeedIsStable(t *testing.T) {
	got := Seed("delta0", 40)
	// SHA-256("delta0") (as sha256sum prints it), then the first 8 bytes of SHA-256 of that block.
	const want = "6b6285ddb81370e5d5632b935948cfc973467892a16ee26f2687c3f2d879d32e"
	if len(got) != 40 {
		t.Fatalf("%d bytes, want 40", len(got))
	}
	if !bytes.Equal(Seed("delta0", 40), got) || bytes.Equal(Seed("delta1", 40), got) {
		t.Fatal("seeds are not a function of their label")
	}
	if hex.EncodeToString(got[:32]) != want {
		t.Fatalf("Seed(delta0) starts %x, want %s", got[:32], want)
	}
	if !bytes.Equal(Seed("delta0", 100)[:40], got) {
		t.Fatal("a longer seed does not extend a shorter one")
	}
}

func TestChoicesRunOutToZero(t *testing.T) {
	c := NewChoices([]byte{7, 3, 1, 5})
	if c.Intn(5) != 2 || !c.Flip() || !c.OneIn(2) || c.Next() != 5 || c.Left() != 0 {
		t.Fatal("decisions do not follow the bytes")
	}
	if c.Next() != 0 || c.Intn(9) != 0 || c.Flip() || c.OneIn(3) {
		t.Fatal("decisions after the bytes ran out are not the plainest")
	}
}
