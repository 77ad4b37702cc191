package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Against serve --demo: resolve --watch prints the route, then the route again when the control plane changes it
// (here a drain written to the config directory takes broker-b's write permission); get topics -w prints the
// topic's row again; proxy-status -w says once that no proxy is connected, then shows resolve's node; all end with
// exit 0 when interrupted.
func TestWatchAgainstServeDemo(t *testing.T) {
	dir := t.TempDir()
	s := startServe(t, "--demo", "--demo-namesrv-address", "127.0.0.1:0", "--config", dir, "--config-poll-interval", "100ms")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// get -w and proxy-status -w watch the same server meanwhile.
	var getOut, getErr, psOut, psErr syncBuffer
	watchers := make(chan int, 2)
	go func() {
		watchers <- run(ctx, []string{"rocketctl", "--server", s.admin, "get", "topics", "TopicTest", "-w", "--watch-interval", "50ms"}, &getOut, &getErr)
	}()
	go func() {
		watchers <- run(ctx, []string{"rocketctl", "--server", s.admin, "proxy-status", "-w", "--watch-interval", "50ms"}, &psOut, &psErr)
	}()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(getOut.String(), "TopicTest") || !strings.Contains(psErr.String(), "No resources found."); {
		if time.Now().After(deadline) {
			t.Fatalf("the watches' first listings: get %q %q, proxy-status %q %q", getOut.String(), getErr.String(), psOut.String(), psErr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	var out, errOut syncBuffer
	done := make(chan int)
	go func() { // resolve connects as node rocketctl: proxy-status -w shows it
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
	for deadline := time.Now().Add(10 * time.Second); strings.Count(getOut.String(), "TopicTest") < 2 || !strings.Contains(psOut.String(), "rocketctl"); {
		if time.Now().After(deadline) {
			t.Fatalf("the watches saw no change: get %q, proxy-status %q %q", getOut.String(), psOut.String(), psErr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if strings.Count(getOut.String(), "NAME") != 1 || strings.Count(psErr.String(), "No resources found.") != 1 {
		t.Errorf("a watch repeated its header or its empty notice:\nget: %s\nproxy-status: %s%s", getOut.String(), psOut.String(), psErr.String())
	}
	cancel()
	for range 2 {
		select {
		case code := <-watchers:
			if code != 0 {
				t.Errorf("an interrupted watch: exit %d", code)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a watch did not end with its context")
		}
	}
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("interrupted resolve --watch: exit %d, %s", code, errOut.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("resolve --watch did not end with its context")
	}
}
