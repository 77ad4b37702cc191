package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rocketpilot/rocketpilot/internal/testutil"
	"github.com/rocketpilot/rocketpilot/xds/server"
)

// syncBuffer is what a command writes while the test reads it (testutil.LogBuffer).
type syncBuffer = testutil.LogBuffer

// get topics --watch prints the list, then each row that changes or appears, and "NAME (deleted)" for a row gone,
// never the header again; it ends with exit 0 when interrupted (its context ends).
func TestGetWatch(t *testing.T) {
	var mu sync.Mutex
	topics := []server.TopicSummary{{Name: "A", Cluster: "c1", Brokers: []string{"broker-a"}, Version: 1},
		{Name: "B", Cluster: "c1", Brokers: []string{"broker-a"}, Version: 1}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		json.NewEncoder(w).Encode(server.TopicList{Total: len(topics), Topics: topics})
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut syncBuffer
	done := make(chan int)
	go func() {
		done <- run(ctx, []string{"rocketctl", "--server", srv.URL, "get", "topics", "-w", "--watch-interval", "20ms"}, &out, &errOut)
	}()
	waitOutput := func(want string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(out.String(), want) {
			if time.Now().After(deadline) {
				t.Fatalf("no %q in the watch's output:\n%s\nstderr: %s", want, out.String(), errOut.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitOutput("B ")
	first := out.String()
	if strings.Count(first, "NAME") != 1 || !strings.Contains(first, "A ") {
		t.Fatalf("first listing:\n%s", first)
	}
	mu.Lock()
	topics = []server.TopicSummary{{Name: "A", Cluster: "c2", Brokers: []string{"broker-b"}, Version: 2},
		{Name: "C", Cluster: "c1", Brokers: []string{"broker-a"}, Version: 3}}
	mu.Unlock()
	waitOutput("B (deleted)")
	waitOutput("broker-b")
	waitOutput("C ")
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("interrupted watch: exit %d, %s", code, errOut.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the watch did not end with its context")
	}
	all := out.String()
	if strings.Count(all, "NAME") != 1 || strings.Count(all, "\nB      c1") != 1 {
		t.Errorf("a header or an unchanged row printed again:\n%s", all)
	}
}

func TestChangedRows(t *testing.T) {
	before := "NAME  X\nA     1\nB     2\n"
	for _, c := range []struct{ now, want string }{
		{before, ""},
		{"NAME  X\nA     1\nB     3\n", "B     3\n"},
		{"NAME  X\nA     1\n", "B (deleted)\n"},
		{"NAME  X\nA     1\nB     2\nC     4\n", "C     4\n"},
	} {
		if got := changedRows(before, c.now, true, true); got != c.want {
			t.Errorf("changedRows(%q) = %q, want %q", c.now, got, c.want)
		}
	}
	if got := changedRows(`{"a":1}`, `{"a":2}`, false, true); got != `{"a":2}` {
		t.Errorf("JSON changed: %q", got)
	}
	// Rows sharing their first column (a node's streams) are compared whole; the clock's columns do not count.
	streams := "NODE   STREAM   CDS      AGE\nn1     1        SYNCED   5s\nn1     2        STALE    5s\n"
	if got := changedRows(streams, strings.ReplaceAll(streams, "5s", "6s"), true, true); got != "" {
		t.Errorf("only the age changed: %q", got)
	}
	if got := changedRows(streams, strings.Replace(strings.ReplaceAll(streams, "5s", "7s"), "STALE ", "SYNCED", 1), true, true); got != "n1     2        SYNCED   7s\n" {
		t.Errorf("one of two streams of a node changed: %q", got)
	}
	// A table keyed by its time (the change log): a new entry is printed, the old ones are not again.
	changes := "AGE   VERSION   CHANGED\n5s    3         TopicTest\n"
	if got := changedRows(changes, "AGE   VERSION   CHANGED\n1s    4         t2\n6s    3         TopicTest\n", true, true); got != "1s    4         t2\n" {
		t.Errorf("a new change: %q", got)
	}
	// Without headers, the first line is a row.
	if got := changedRows("A  1\nB  2\n", "A  9\nB  2\n", true, false); got != "A  9\n" {
		t.Errorf("no headers: %q", got)
	}
}
