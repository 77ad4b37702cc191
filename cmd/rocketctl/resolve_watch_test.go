package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// resolve --watch prints the route, then the route again when the control plane changes it (here a drain written
// to the config directory takes broker-b's write permission), until interrupted (exit 0).
func TestResolveWatch(t *testing.T) {
	dir := t.TempDir()
	s := startServe(t, "--demo", "--demo-namesrv-address", "127.0.0.1:0", "--config", dir, "--config-poll-interval", "100ms")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut syncBuffer
	done := make(chan int)
	go func() {
		done <- run(ctx, []string{"rocketctl", "--server", s.admin, "resolve", "TopicTest", "--watch"}, &out, &errOut)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), `"brokerName": "broker-b"`) {
		if time.Now().After(deadline) {
			t.Fatalf("no first route: %s %s", out.String(), errOut.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := strings.Count(out.String(), `"queueDatas"`); n != 1 {
		t.Fatalf("%d routes before any change:\n%s", n, out.String())
	}
	drain := "apiVersion: rocketpilot.io/v1alpha1\nkind: TopicRoute\nmetadata: {name: drain-b}\nspec:\n  topics: {exact: [TopicTest]}\n  drain: {brokerNames: [broker-b]}\n"
	if err := os.WriteFile(filepath.Join(dir, "drain.yaml"), []byte(drain), 0o644); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(15 * time.Second); strings.Count(out.String(), `"queueDatas"`) < 2; {
		if time.Now().After(deadline) {
			t.Fatalf("the drain's route never printed:\n%s\n%s", out.String(), errOut.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	second := out.String()[strings.LastIndex(out.String(), `"queueDatas"`):]
	if !strings.Contains(second, `"perm": 4`) { // broker-b read-only
		t.Errorf("the route after the drain has no read-only group:\n%s", second)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("interrupted resolve --watch: exit %d, %s", code, errOut.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("resolve --watch did not end with its context")
	}
}
