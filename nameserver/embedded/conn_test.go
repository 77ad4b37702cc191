package embedded

import (
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/rocketpilot/rocketpilot/remoting"

	"github.com/rocketpilot/rocketpilot/internal/testutil"
)

// syncBuffer collects a logger's output (testutil.LogBuffer).
type syncBuffer = testutil.LogBuffer

func TestBadFramesCloseOnlyTheirConnection(t *testing.T) {
	logs := &syncBuffer{}
	s := start(t, Options{MaxFrameSize: 4096, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	LoadDemo(s)
	good := dial(t, s.Addr())
	wantCode(t, good.call(routeReq(DemoTopic)), remoting.Success, "")

	huge := binary.BigEndian.AppendUint32(nil, 4097)
	for name, garbage := range map[string][]byte{
		"text":                []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		"length too short":    {0, 0, 0, 2, 0xff, 0xff},
		"oversized":           append(huge, make([]byte, 16)...),
		"bad header":          append([]byte{0, 0, 0, 9, 0, 0, 0, 5}, "{oops"...),
		"unknown serializer":  {0, 0, 0, 6, 9, 0, 0, 2, '{', '}'},
		"header beyond frame": {0, 0, 0, 6, 0, 0, 0, 99, '{', '}'},
	} {
		t.Run(name, func(t *testing.T) {
			bad := dial(t, s.Addr())
			wantCode(t, bad.call(routeReq(DemoTopic)), remoting.Success, "") // a working connection first
			bad.writeRaw(garbage)
			bad.expectClosed()
			// The other connection, and new ones, still work.
			wantCode(t, good.call(routeReq(DemoTopic)), remoting.Success, "")
			wantCode(t, dial(t, s.Addr()).call(req(remoting.GetBrokerClusterInfo, nil)), remoting.Success, "")
		})
	}
	if !strings.Contains(logs.String(), "bad frame") || !strings.Contains(logs.String(), "exceeds the size limit") {
		t.Fatalf("bad frames not logged:\n%s", logs.String())
	}
}

func TestFrameJustUnderTheLimit(t *testing.T) {
	s := start(t, Options{MaxFrameSize: 4096})
	LoadDemo(s)
	c := dial(t, s.Addr())
	r := routeReq(DemoTopic)
	r.Body = make([]byte, 3000) // request bodies are ignored, but count toward the limit
	wantCode(t, c.call(r), remoting.Success, "")
	r = routeReq(DemoTopic)
	r.Body = make([]byte, 4096)
	c.send(r)
	c.expectClosed()
}

func TestCorruptResponses(t *testing.T) {
	s := demo(t)
	s.CorruptResponses(2)
	for range 2 {
		c := dial(t, s.Addr())
		c.send(routeReq(DemoTopic))
		_, err := c.read()
		if !errors.Is(err, remoting.ErrMalformed) {
			t.Fatalf("read of a corrupt response: %v", err)
		}
	}
	// The third answer is real again, and the requests were all received.
	wantCode(t, dial(t, s.Addr()).call(routeReq(DemoTopic)), remoting.Success, "")
	if n := s.RequestCount(remoting.GetRouteInfoByTopic); n != 3 {
		t.Fatalf("count %d", n)
	}
	// Cancelling pending corruption.
	s.CorruptResponses(5)
	s.CorruptResponses(0)
	wantCode(t, dial(t, s.Addr()).call(routeReq(DemoTopic)), remoting.Success, "")
	// The corrupt frame is complete: it does not leave the stream mid-frame.
	if int(binary.BigEndian.Uint32(corruptFrame)) != len(corruptFrame)-4 {
		t.Fatal("corrupt frame length prefix does not match")
	}
	if _, err := remoting.Decode(corruptFrame[4:]); !errors.Is(err, remoting.ErrMalformed) {
		t.Fatalf("corrupt frame decodes: %v", err)
	}
}

func TestPauseResume(t *testing.T) {
	s := demo(t)
	addr := s.Addr()
	c := dial(t, addr)
	wantCode(t, c.call(routeReq(DemoTopic)), remoting.Success, "")

	s.Pause()
	c.expectClosed()
	if nc, err := net.DialTimeout("tcp", addr, ioTimeout); err == nil {
		nc.Close()
		t.Fatal("dial succeeded while paused")
	}
	s.Pause() // idempotent
	s.SetTopic("while-paused", rw("broker-a", 1))

	if err := s.Resume(); err != nil {
		t.Fatal(err)
	}
	if s.Addr() != addr {
		t.Fatalf("address changed: %s → %s", addr, s.Addr())
	}
	if err := s.Resume(); err != nil { // no-op while listening
		t.Fatal(err)
	}
	c = dial(t, addr)
	wantCode(t, c.call(routeReq(DemoTopic)), remoting.Success, "")
	wantCode(t, c.call(routeReq("while-paused")), remoting.Success, "")
	if s.TopicCount() != 122 {
		t.Fatalf("state lost: %d topics", s.TopicCount())
	}
}

func TestPauseResumeFixedAddress(t *testing.T) {
	probe := start(t, Options{})
	addr := probe.Addr()
	_ = probe.Close() // free a port to reuse as a configured address
	s := start(t, Options{Addr: addr})
	LoadDemo(s)
	for range 3 {
		s.Pause()
		if err := s.Resume(); err != nil {
			t.Fatal(err)
		}
		wantCode(t, dial(t, addr).call(routeReq(DemoTopic)), remoting.Success, "")
	}
}

func TestDropConnections(t *testing.T) {
	s := demo(t)
	a, b := dial(t, s.Addr()), dial(t, s.Addr())
	a.call(routeReq(DemoTopic))
	b.call(routeReq(DemoTopic))
	if n := s.Connections(); n != 2 {
		t.Fatalf("%d connections", n)
	}
	s.DropConnections()
	a.expectClosed()
	b.expectClosed()
	eventually(t, "connections to be forgotten", func() bool { return s.Connections() == 0 })
	wantCode(t, dial(t, s.Addr()).call(routeReq(DemoTopic)), remoting.Success, "")
}

func TestLatency(t *testing.T) {
	s := demo(t)
	c := dial(t, s.Addr())
	const d = 400 * time.Millisecond // long enough that an undelayed call on a loaded machine stays under it
	s.SetLatency(d)
	t0 := time.Now()
	wantCode(t, c.call(routeReq(DemoTopic)), remoting.Success, "")
	if el := time.Since(t0); el < d {
		t.Fatalf("answered after %v, latency %v", el, d)
	}
	s.SetLatency(0)
	t0 = time.Now()
	c.call(routeReq(DemoTopic))
	if el := time.Since(t0); el >= d {
		t.Fatalf("latency still applied: %v", el)
	}

	// A pending delayed answer does not hold up DropConnections or Close.
	s.SetLatency(time.Hour)
	c.send(routeReq(DemoTopic))
	eventually(t, "the request to arrive", func() bool { return s.RequestCount(remoting.GetRouteInfoByTopic) == 3 })
	t0 = time.Now()
	s.DropConnections()
	c.expectClosed()
	d2 := dial(t, s.Addr())
	d2.send(routeReq(DemoTopic))
	eventually(t, "the request to arrive", func() bool { return s.RequestCount(remoting.GetRouteInfoByTopic) == 4 })
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(t0); el > ioTimeout {
		t.Fatalf("Close waited %v", el)
	}
}

func TestIdleTimeout(t *testing.T) {
	// Generous margins: the bounds below only tell "closed for idleness" from "closed at once" and "kept open".
	s := start(t, Options{IdleTimeout: 300 * time.Millisecond})
	LoadDemo(s)
	c := dial(t, s.Addr())
	c.call(routeReq(DemoTopic))
	t0 := time.Now()
	c.expectClosed()
	if el := time.Since(t0); el < 100*time.Millisecond {
		t.Fatalf("closed after %v", el)
	}
	// Activity keeps a connection open.
	c = dial(t, s.Addr())
	for range 5 {
		time.Sleep(60 * time.Millisecond)
		wantCode(t, c.call(routeReq(DemoTopic)), remoting.Success, "")
	}
}

func TestLifecycle(t *testing.T) {
	if err := New(Options{HeaderType: 7}).Start(); err == nil {
		t.Fatal("unknown header type accepted")
	}
	if err := New(Options{HeaderType: remoting.SerializeRocketMQ, Version: 40000}).Start(); err == nil {
		t.Fatal("version beyond int16 accepted with binary headers")
	}
	s := New(Options{})
	if s.Addr() != "" {
		t.Fatal("address before Start")
	}
	if err := s.Resume(); err == nil {
		t.Fatal("Resume before Start")
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err == nil {
		t.Fatal("second Start accepted")
	}
	host, _, _ := net.SplitHostPort(s.Addr())
	if host != "127.0.0.1" {
		t.Fatalf("default address %s", s.Addr())
	}
	c := dial(t, s.Addr())
	c.call(req(remoting.GetBrokerClusterInfo, nil))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	c.expectClosed()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Resume(); err == nil {
		t.Fatal("Resume after Close")
	}
	if err := s.Start(); err == nil {
		t.Fatal("Start after Close")
	}
	if nc, err := net.DialTimeout("tcp", s.Addr(), ioTimeout); err == nil {
		nc.Close()
		t.Fatal("dial succeeded after Close")
	}
	// Close without Start.
	if err := New(Options{}).Close(); err != nil {
		t.Fatal(err)
	}
	// A client that half-closes after its request still gets the answer, then the server closes.
	s2 := demo(t)
	nc, err := net.DialTimeout("tcp", s2.Addr(), ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	frame, _ := remoting.Encode(routeReq(DemoTopic))
	_, _ = nc.Write(frame)
	_ = nc.(*net.TCPConn).CloseWrite()
	_ = nc.SetReadDeadline(time.Now().Add(ioTimeout))
	r := remoting.NewReader(nc, 0)
	if resp, err := r.Read(); err != nil || resp.Code != remoting.Success {
		t.Fatalf("answer after half-close: %v %v", resp, err)
	}
	if _, err := r.Read(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the answer: %v", err)
	}
}
