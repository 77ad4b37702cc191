package faultnet

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/rocketpilot/rocketpilot/internal/embeddedtest"
	"github.com/rocketpilot/rocketpilot/nameserver/embedded"
	"github.com/rocketpilot/rocketpilot/remoting"
)

const ioTimeout = 5 * time.Second

// setup starts an embedded NameServer with one broker and a proxy in front of it.
func setup(t *testing.T, opts Options) *Proxy {
	t.Helper()
	ns := embeddedtest.Start(t, nil)
	ns.RegisterBroker(embedded.Broker{Cluster: "c1", Name: "broker-a", Addrs: map[int64]string{0: "127.0.1.1:10911"}})
	p, err := Listen(ns.Addr(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

type client struct {
	t      *testing.T
	nc     net.Conn
	r      *remoting.Reader
	opaque int32
}

func dial(t *testing.T, p *Proxy, maxFrame int) *client {
	t.Helper()
	nc, err := net.DialTimeout("tcp", p.Addr(), ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &client{t: t, nc: nc, r: remoting.NewReader(nc, maxFrame)}
}

// call sends a broker-table request (106) and returns what reading its response gave.
func (c *client) call() (*remoting.Command, error) {
	c.t.Helper()
	return c.callWithin(ioTimeout)
}

func (c *client) callWithin(d time.Duration) (*remoting.Command, error) {
	c.t.Helper()
	c.opaque++
	req := remoting.NewRequest(remoting.GetBrokerClusterInfo, nil)
	req.Opaque = c.opaque
	frame, err := remoting.Encode(req)
	if err != nil {
		c.t.Fatal(err)
	}
	c.nc.SetDeadline(time.Now().Add(d))
	if _, err := c.nc.Write(frame); err != nil {
		c.t.Fatal(err)
	}
	return c.r.Read()
}

func TestPassThrough(t *testing.T) {
	p := setup(t, Options{})
	c := dial(t, p, 0)
	for range 3 {
		resp, err := c.call()
		if err != nil || resp.Code != remoting.Success || resp.Opaque != c.opaque {
			t.Fatalf("response %v, %v", resp, err)
		}
	}
	if p.Accepted() != 1 || p.Applied() != 0 {
		t.Fatalf("accepted %d, applied %d", p.Accepted(), p.Applied())
	}
}

func TestCutEndsTheStreamInsideAFrame(t *testing.T) {
	p := setup(t, Options{})
	p.Inject(Cut)
	c := dial(t, p, 0)
	_, err := c.call()
	if !errors.Is(err, remoting.ErrMalformed) {
		t.Fatalf("read after a cut frame: %v, want ErrMalformed (stream ended inside a frame)", err)
	}
	if p.Applied() != 1 || p.Pending() != 0 {
		t.Fatalf("applied %d, pending %d", p.Applied(), p.Pending())
	}
	// The next connection is served normally.
	if resp, err := dial(t, p, 0).call(); err != nil || resp.Code != remoting.Success {
		t.Fatalf("after the cut: %v, %v", resp, err)
	}
}

func TestStallLeavesTheConnectionOpen(t *testing.T) {
	p := setup(t, Options{})
	p.Inject(Stall)
	c := dial(t, p, 0)
	_, err := c.callWithin(300 * time.Millisecond)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read of a stalled frame: %v, want a timeout (the connection stays open)", err)
	}
	if p.Open() != 1 {
		t.Fatalf("%d connections open, want the stalled one", p.Open())
	}
}

// TestFreezeSendsNothingEvenAfterHeal: a frozen connection gets not one byte, for that response or any later one,
// and stays open; a new connection after Heal is answered.
func TestFreezeSendsNothingEvenAfterHeal(t *testing.T) {
	p := setup(t, Options{})
	p.Inject(Freeze)
	c := dial(t, p, 0)
	for range 2 {
		_, err := c.callWithin(200 * time.Millisecond)
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("read on a frozen connection: %v, want a timeout with nothing read", err)
		}
		p.Heal()
	}
	if p.Open() != 1 || p.Applied() != 1 {
		t.Fatalf("%d connections open, %d faults applied; want the frozen one, 1", p.Open(), p.Applied())
	}
	if resp, err := dial(t, p, 0).call(); err != nil || resp.Code != remoting.Success {
		t.Fatalf("a new connection after the freeze: %v, %v", resp, err)
	}
}

func TestGarbageIsMalformed(t *testing.T) {
	p := setup(t, Options{})
	p.Inject(Garbage)
	c := dial(t, p, 0)
	if _, err := c.call(); !errors.Is(err, remoting.ErrMalformed) {
		t.Fatalf("read of garbage: %v, want ErrMalformed", err)
	}
}

func TestOversizeIsRefusedAndClientCloseIsCounted(t *testing.T) {
	p := setup(t, Options{OversizeLength: 1 << 30})
	p.Inject(Oversize)
	c := dial(t, p, 1<<20)
	if _, err := c.call(); !errors.Is(err, remoting.ErrFrameTooLarge) {
		t.Fatalf("read of an oversized frame: %v, want ErrFrameTooLarge", err)
	}
	c.nc.Close()
	deadline := time.Now().Add(ioTimeout)
	for p.ClientClosed() != 1 || p.Open() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("client closes %d, open %d", p.ClientClosed(), p.Open())
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestFaultsApplyInOrderAcrossConnections(t *testing.T) {
	p := setup(t, Options{})
	p.Inject(Garbage, Cut)
	if _, err := dial(t, p, 0).call(); !errors.Is(err, remoting.ErrMalformed) {
		t.Fatalf("first: %v", err)
	}
	if _, err := dial(t, p, 0).call(); !errors.Is(err, remoting.ErrMalformed) {
		t.Fatalf("second: %v", err)
	}
	if resp, err := dial(t, p, 0).call(); err != nil || resp.Code != remoting.Success {
		t.Fatalf("third: %v, %v", resp, err)
	}
}

func TestUpstreamDownClosesAtOnce(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	p, err := Listen(addr, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c := dial(t, p, 0)
	if _, err := c.call(); err == nil {
		t.Fatal("a proxy in front of nothing answered")
	}
	if p.Accepted() != 0 {
		t.Fatalf("accepted %d connections with no upstream", p.Accepted())
	}
}

func TestBodyIsReplaced(t *testing.T) {
	p := setup(t, Options{})
	p.Inject(Body)
	c := dial(t, p, 0)
	resp, err := c.call()
	if err != nil || resp.Code != remoting.Success || resp.Opaque != c.opaque {
		t.Fatalf("response %v, %v", resp, err)
	}
	if string(resp.Body) != string(badBody) {
		t.Fatalf("body %q, want %q", resp.Body, badBody)
	}
	if _, err := remoting.DecodeClusterInfo(resp.Body); err == nil {
		t.Fatal("the replaced body decodes")
	}
	if resp, err := c.call(); err != nil || string(resp.Body) == string(badBody) {
		t.Fatalf("the next response: %v, %v", resp, err)
	}
}

func TestAlwaysUntilHeal(t *testing.T) {
	p := setup(t, Options{})
	p.Always(Garbage)
	for range 3 {
		if _, err := dial(t, p, 0).call(); !errors.Is(err, remoting.ErrMalformed) {
			t.Fatalf("under Always(Garbage): %v", err)
		}
	}
	p.Heal()
	if resp, err := dial(t, p, 0).call(); err != nil || resp.Code != remoting.Success {
		t.Fatalf("after Heal: %v, %v", resp, err)
	}
	if p.Applied() != 3 {
		t.Fatalf("applied %d faults, want 3", p.Applied())
	}
}
