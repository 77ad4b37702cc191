package client

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rocketpilot/rocketpilot/remoting"

	"github.com/rocketpilot/rocketpilot/internal/testutil"
)

// TestStalledFrameReplacesTheConnection: a peer that stops in the middle of a response frame and leaves the
// connection open would keep the reader waiting forever. Once a request times out with the frame silent for
// RequestTimeout, the connection is closed, and the next request dials a new one. Requests that merely go
// unanswered close nothing (TestTimeoutLeavesOthersWorking).
func TestStalledFrameReplacesTheConnection(t *testing.T) {
	var mu sync.Mutex
	stalled := map[net.Conn]bool{}
	srv := newServer(t, func(nc net.Conn, req *remoting.Command) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case stalled[nc]:
			// Nothing more on a stalled connection: a reply would read as the rest of the stalled frame.
		case req.Ext("topic") == "stall":
			stalled[nc] = true
			resp := remoting.NewResponse(req, remoting.Success, "")
			resp.Body = []byte("a body the client never sees whole")
			frame, err := remoting.Encode(resp)
			if err != nil {
				panic(err)
			}
			nc.Write(frame[:len(frame)/2])
		default:
			echo(nc, req)
		}
	})
	opts := fastOptions()
	opts.RequestTimeout = 100 * time.Millisecond
	var logs lockedBuffer
	opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	c := New(srv.addr(), opts)
	defer c.Close()
	ctx := context.Background()
	if _, err := c.GetRouteInfoRaw(ctx, "stall"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("stalled request: %v", err)
	}
	// The stall may be younger than the timeout when the first request gives up; a later one finds it older. Then
	// the connection is closed, backed off like one that broke on a bad frame, and replaced.
	deadline := time.Now().Add(5 * time.Second)
	for {
		body, err := c.GetRouteInfoRaw(ctx, "after")
		if err == nil {
			if string(body) != "after" || c.Dials() != 2 || !strings.Contains(logs.String(), "stalled inside a frame") {
				t.Fatalf("after the stall: %q, %d dials, log:\n%s", body, c.Dials(), logs.String())
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stalled connection was never replaced: %v", err)
		}
		time.Sleep(opts.MinBackoff / 2)
	}
}

// lockedBuffer collects a logger's output (testutil.LogBuffer).
type lockedBuffer = testutil.LogBuffer

// TestSilentConnectionIsRedialled: SilentTimeouts requests in a row that time out with not one byte read since
// they were sent close the connection (a frozen peer), and the next request dials anew. A timeout followed by any
// answer starts the count again: a peer that leaves some requests unanswered keeps its connection.
func TestSilentConnectionIsRedialled(t *testing.T) {
	srv := newServer(t, func(nc net.Conn, req *remoting.Command) {
		if req.Ext("topic") != "hole" {
			echo(nc, req)
		}
	})
	opts := fastOptions()
	opts.RequestTimeout = 50 * time.Millisecond
	opts.SilentTimeouts = 2
	c := New(srv.addr(), opts)
	defer c.Close()
	ctx := context.Background()
	for range 3 {
		if _, err := c.GetRouteInfoRaw(ctx, "hole"); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("unanswered request: %v", err)
		}
		if _, err := c.GetRouteInfoRaw(ctx, "ok"); err != nil || c.Dials() != 1 {
			t.Fatalf("timeouts apart: err %v, %d dials", err, c.Dials())
		}
	}
	for range 2 {
		if _, err := c.GetRouteInfoRaw(ctx, "hole"); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("unanswered request: %v", err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		body, err := c.GetRouteInfoRaw(ctx, "after")
		if err == nil {
			if string(body) != "after" || c.Dials() != 2 {
				t.Fatalf("after two silent timeouts: %q, %d dials", body, c.Dials())
			}
			return
		}
		if !errors.Is(err, ErrBackoff) || time.Now().After(deadline) {
			t.Fatalf("the silent connection was not replaced: %v", err)
		}
		time.Sleep(opts.MinBackoff / 2)
	}
}

// TestOnePauseWithManyRequestsInFlightKeepsTheConnection: requests in flight together time out together, in one
// silence; a NameServer that pauses once (a GC pause, a write lock) while many are in flight is slow, not frozen,
// and keeps its connection. Only SilentTimeouts separate windows of silence close it.
func TestOnePauseWithManyRequestsInFlightKeepsTheConnection(t *testing.T) {
	var paused atomic.Bool
	srv := newServer(t, func(nc net.Conn, req *remoting.Command) {
		if req.Ext("topic") == "pause" && paused.CompareAndSwap(false, true) {
			time.Sleep(80 * time.Millisecond) // one pause: the requests behind it wait too, then all are answered
		}
		echo(nc, req)
	})
	opts := fastOptions()
	opts.RequestTimeout = 50 * time.Millisecond
	opts.SilentTimeouts = 3
	c := New(srv.addr(), opts)
	defer c.Close()
	ctx := context.Background()
	if _, err := c.GetRouteInfoRaw(ctx, "ok"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, err := c.GetRouteInfoRaw(ctx, "pause"); !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("a request during the pause: %v", err)
			}
		})
	}
	wg.Wait()
	if body, err := c.GetRouteInfoRaw(ctx, "after"); err != nil || string(body) != "after" || c.Dials() != 1 {
		t.Fatalf("after one pause: %q, %v, %d dials; want the same connection", body, err, c.Dials())
	}
}
