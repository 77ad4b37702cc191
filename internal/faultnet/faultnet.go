// Package faultnet is a TCP proxy for fault tests of RocketMQ remoting clients. It sits between a client and a
// real server over loopback, passes requests through untouched and, on demand, damages the server's responses as
// a broken peer or middlebox would: a frame cut short and the connection closed, a frame cut short and the
// connection left open, bytes that are no frame, a length prefix that announces more than any limit, silence.
//
// It reads responses frame by frame (a 4-byte big-endian length, then that many bytes), so each fault replaces
// exactly one response. It is for tests only.
package faultnet

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Fault is what happens to one response frame.
type Fault int

const (
	// Cut writes the first half of the response frame, then closes the connection.
	Cut Fault = iota + 1
	// Stall writes the first half of the response frame, then nothing more; the connection stays open, and later
	// responses on it are dropped.
	Stall
	// Garbage writes bytes that are no frame in place of the response: a small, plausible length prefix followed
	// by junk whose header-length word names no serialization. The connection stays open.
	Garbage
	// Oversize writes, in place of the response, a length prefix announcing Options.OversizeLength bytes and a few
	// bytes after it, then nothing more; the connection stays open, and later responses on it are dropped.
	Oversize
	// Body keeps the response's frame and header but replaces its body with bytes that are no JSON: a
	// well-formed answer that cannot be decoded.
	Body
	// Freeze writes nothing in place of the response, and nothing more on the connection, which stays open: a
	// process that froze (stopped, or stuck in a pause) holding its connections. Later responses on it are
	// dropped even after Heal; new connections answer.
	Freeze
)

func (f Fault) String() string {
	switch f {
	case Cut:
		return "cut"
	case Stall:
		return "stall"
	case Garbage:
		return "garbage"
	case Oversize:
		return "oversize"
	case Body:
		return "body"
	case Freeze:
		return "freeze"
	}
	return "none"
}

// Options configure a Proxy. Zero values take the defaults in parentheses.
type Options struct {
	// OversizeLength is the frame length an Oversize fault announces (2^31-1, the largest the field holds).
	OversizeLength uint32
	// MaxFrame bounds a response frame the proxy reads whole (64 MiB); a larger one closes the connection.
	MaxFrame int
}

// Proxy forwards connections to one upstream address. Its methods are safe for concurrent use.
type Proxy struct {
	upstream string
	opts     Options
	ln       net.Listener

	mu     sync.Mutex
	queue  []Fault // applied in order to the next response frames, over all connections
	always Fault   // applied to every response frame once queue is empty
	conns  map[*conn]struct{}
	closed bool
	wg     sync.WaitGroup

	accepted     atomic.Int64
	clientClosed atomic.Int64
	applied      atomic.Int64
}

// Listen starts a proxy on a free loopback port in front of upstream (host:port).
func Listen(upstream string, opts Options) (*Proxy, error) {
	if opts.OversizeLength == 0 {
		opts.OversizeLength = 1<<31 - 1
	}
	if opts.MaxFrame <= 0 {
		opts.MaxFrame = 64 << 20
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{upstream: upstream, opts: opts, ln: ln, conns: map[*conn]struct{}{}}
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// Addr is the address clients dial instead of the upstream's.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Inject queues faults for the next response frames, one frame each, in order.
func (p *Proxy) Inject(faults ...Fault) {
	p.mu.Lock()
	p.queue = append(p.queue, faults...)
	p.mu.Unlock()
}

// Always applies f to every response frame once the injected faults are used up, until Heal.
func (p *Proxy) Always(f Fault) {
	p.mu.Lock()
	p.always = f
	p.mu.Unlock()
}

// Heal drops the injected faults and ends Always: later responses pass untouched. Connections already stalled
// stay so.
func (p *Proxy) Heal() {
	p.mu.Lock()
	p.queue, p.always = nil, 0
	p.mu.Unlock()
}

// Pending returns how many injected faults no response has met yet.
func (p *Proxy) Pending() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.queue)
}

// Applied returns how many faults have been applied.
func (p *Proxy) Applied() int64 { return p.applied.Load() }

// Accepted returns how many client connections the proxy accepted.
func (p *Proxy) Accepted() int64 { return p.accepted.Load() }

// ClientClosed returns how many connections ended because the client closed them (not the proxy or the upstream).
func (p *Proxy) ClientClosed() int64 { return p.clientClosed.Load() }

// Open returns the number of open client connections.
func (p *Proxy) Open() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// Close stops listening, closes every connection and waits for the proxy's goroutines.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.close(closedByProxy)
	}
	p.mu.Unlock()
	err := p.ln.Close()
	p.wg.Wait()
	return err
}

func (p *Proxy) take() Fault {
	p.mu.Lock()
	defer p.mu.Unlock()
	f := p.always
	if len(p.queue) > 0 {
		f, p.queue = p.queue[0], p.queue[1:]
	}
	if f != 0 {
		p.applied.Add(1)
	}
	return f
}

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		server, err := net.DialTimeout("tcp", p.upstream, 5*time.Second)
		if err != nil {
			// The upstream is down: the client sees a connection that closes at once, as through a real proxy.
			client.Close()
			continue
		}
		c := &conn{client: client, server: server}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			client.Close()
			server.Close()
			return
		}
		p.conns[c] = struct{}{}
		p.accepted.Add(1)
		p.wg.Add(2)
		p.mu.Unlock()
		go p.requests(c)
		go p.responses(c)
	}
}

// Who ended a connection first.
const (
	closedByProxy int32 = iota + 1
	closedByClient
	closedByServer
)

type conn struct {
	client, server net.Conn
	by             atomic.Int32 // who closed it first
}

func (c *conn) close(by int32) {
	if c.by.CompareAndSwap(0, by) {
		c.client.Close()
		c.server.Close()
	}
}

func (p *Proxy) forget(c *conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// requests copies client to server untouched. It ending first means the client closed the connection.
func (p *Proxy) requests(c *conn) {
	defer p.wg.Done()
	_, err := io.Copy(c.server, c.client)
	by := closedByClient
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "write" {
		by = closedByServer
	}
	if c.by.CompareAndSwap(0, by) {
		if by == closedByClient {
			p.clientClosed.Add(1)
		}
		c.client.Close()
		c.server.Close()
	}
	p.forget(c)
}

// responses copies server to client frame by frame, applying the queued faults.
func (p *Proxy) responses(c *conn) {
	defer p.wg.Done()
	defer p.forget(c)
	r := bufio.NewReader(c.server)
	stalled := false
	for {
		var prefix [4]byte
		if _, err := io.ReadFull(r, prefix[:]); err != nil {
			c.close(closedByServer)
			return
		}
		n := binary.BigEndian.Uint32(prefix[:])
		if uint64(n) > uint64(p.opts.MaxFrame) {
			c.close(closedByProxy)
			return
		}
		frame := make([]byte, 4+int(n))
		copy(frame, prefix[:])
		if _, err := io.ReadFull(r, frame[4:]); err != nil {
			c.close(closedByServer)
			return
		}
		if stalled {
			continue // the client's stream is stuck inside a frame: nothing after it can be delivered
		}
		var out []byte
		f := p.take()
		switch f {
		case Cut, Stall:
			out = frame[:max(len(frame)/2, 5)] // the whole length prefix and part of the rest
			stalled = f == Stall
		case Garbage:
			out = garbage
		case Oversize:
			out = binary.BigEndian.AppendUint32(nil, p.opts.OversizeLength)
			out = append(out, garbage[4:]...)
			stalled = true
		case Body:
			out = replaceBody(frame)
		case Freeze:
			stalled = true
			continue
		default:
			out = frame
		}
		if _, err := c.client.Write(out); err != nil {
			c.close(closedByClient)
			return
		}
		if f == Cut {
			c.close(closedByProxy)
			return
		}
	}
}

// badBody is what a Body fault puts in place of a response body.
var badBody = []byte("{\"brokerDatas\":[{\"brokerName\": <truncated")

// replaceBody returns frame with its body replaced by badBody; a frame too short to hold a header is returned as
// it is.
func replaceBody(frame []byte) []byte {
	if len(frame) < 8 {
		return frame
	}
	headerLen := int(binary.BigEndian.Uint32(frame[4:8]) & (1<<24 - 1))
	if 8+headerLen > len(frame) {
		return frame
	}
	out := append(slices.Clip(frame[:8+headerLen]), badBody...)
	binary.BigEndian.PutUint32(out, uint32(len(out)-4))
	return out
}

// garbage is a complete 28-byte frame by its length prefix whose header-length word (0xffffffff) names serialization
// 0xff, which does not exist, and a header longer than the frame.
var garbage = []byte{0, 0, 0, 24, 0xff, 0xff, 0xff, 0xff, 'n', 'o', 't', ' ', 'a', ' ', 'f', 'r', 'a', 'm', 'e', 0, 1, 2, 3, 4, 5, 6, 7, 8}
