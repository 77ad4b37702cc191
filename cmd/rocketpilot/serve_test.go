package main

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for the logger and the test to share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestServeDemo runs `rocketpilot serve --demo` in process and checks that it learns and logs the demo topics.
func TestServeDemo(t *testing.T) {
	var logs syncBuffer
	root := newRootCommand()
	root.SetArgs([]string{"serve", "--demo", "--demo-namesrv-address", "127.0.0.1:0", "--xds-address", "127.0.0.1:0", "--admin-address", "127.0.0.1:0", "--log-format", "json"})
	root.SetErr(&logs)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()

	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), `"msg":"routing model ready"`) {
		if time.Now().After(deadline) {
			t.Fatalf("no routing model within 10s; logs:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	out := logs.String()
	if n := strings.Count(out, `"msg":"topic learned"`); n < 100 {
		t.Fatalf("logged %d learned topics, want at least 100", n)
	}
	if !strings.Contains(out, `"topic":"TopicTest","brokers":"broker-a(DefaultCluster,RW-) broker-b(DefaultCluster,RW-)"`) {
		t.Fatalf("TopicTest not logged with its two broker groups:\n%s", out)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("serve did not stop after its context ended")
	}
}

func TestServeNeedsASource(t *testing.T) {
	root := newRootCommand()
	root.SetArgs([]string{"serve"})
	root.SetErr(&bytes.Buffer{})
	if err := root.Execute(); err == nil || !strings.Contains(err.Error(), "give --namesrv, --demo, --kubernetes or --config") {
		t.Fatalf("serve without a source: err = %v", err)
	}
}

func TestServeRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"serve", "--demo", "--discovery", "sometimes", "--demo-namesrv-address", "127.0.0.1:0", "--xds-address", "127.0.0.1:0", "--admin-address", ""},
		{"serve", "--demo", "--log-level", "loud"},
		{"serve", "--kubernetes", "--config", "."},
		{"serve", "--demo", "--xds-compression", "brotli", "--demo-namesrv-address", "127.0.0.1:0", "--xds-address", "127.0.0.1:0", "--admin-address", ""},
	} {
		root := newRootCommand()
		root.SetArgs(args)
		root.SetErr(&bytes.Buffer{})
		if err := root.Execute(); err == nil {
			t.Fatalf("%v accepted", args)
		}
	}
}
