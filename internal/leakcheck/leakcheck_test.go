package leakcheck

import (
	"testing"
)

var held [][]byte

func TestCheckFindsALeftGoroutine(t *testing.T) {
	if code := check(liveHeap(), nil); code != 0 {
		t.Fatalf("check of a clean process: %d", code)
	}
	stop := make(chan struct{})
	go func() { <-stop }()
	if code := check(liveHeap(), nil); code != 1 {
		t.Fatal("a goroutine left running was not found")
	}
	close(stop)
	if code := check(liveHeap(), nil); code != 0 {
		t.Fatal("the goroutine ended, yet check still fails")
	}
}

func TestCheckFindsAGrownHeap(t *testing.T) {
	before := liveHeap()
	for range 3 {
		held = append(held, make([]byte, HeapLimit/2))
	}
	if code := check(before, nil); code != 1 {
		t.Fatal("a heap grown beyond the limit was not reported")
	}
	held = nil
	if code := check(before, nil); code != 0 {
		t.Fatal("the heap was released, yet check still fails")
	}
}

func TestMain(m *testing.M) { Main(m) }
