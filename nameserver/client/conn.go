package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rocketpilot/rocketpilot/remoting"
)

// conn is one TCP connection with a reader goroutine that hands responses to waiting requests by opaque.
type conn struct {
	nc      net.Conn
	opts    Options
	reader  *remoting.Reader
	opened  time.Time
	used    atomic.Int64 // unix nanos of the last request
	arrived atomic.Int64 // monotonic nanos (since) of the last bytes read
	silent  atomic.Int32 // separate request timeouts in a row with no byte read since their requests were sent
	// lastSilent is when the last counted silent timeout happened (monotonic nanos): a request sent before it
	// times out in the same silence and does not count again.
	lastSilent atomic.Int64
	bad        atomic.Bool // closed because the peer sent a malformed or oversized frame, or stalled inside one
	onAnswer   func()      // called once, on the first response, when set
	answered   sync.Once

	// Writes are group-committed: frames queue in wbuf and whichever caller finds no flush under way writes
	// everything queued, so concurrent requests share system calls.
	wmu      sync.Mutex
	wbuf     []byte
	spare    []byte
	flushing bool

	mu      sync.Mutex
	pending map[int32]chan *remoting.Command
	err     error // set once the connection is dead
	done    chan struct{}
}

func newConn(nc net.Conn, opts Options) *conn {
	cn := &conn{nc: nc, opts: opts, opened: time.Now(), pending: make(map[int32]chan *remoting.Command), done: make(chan struct{})}
	cn.used.Store(time.Now().UnixNano())
	cn.reader = remoting.NewReader(activity{cn}, opts.MaxFrameSize)
	go cn.readLoop()
	return cn
}

func (cn *conn) lastUsed() time.Time { return time.Unix(0, cn.used.Load()) }

// activity reads the socket, recording when bytes last arrived.
type activity struct{ cn *conn }

func (a activity) Read(p []byte) (int, error) {
	n, err := a.cn.nc.Read(p)
	if n > 0 {
		a.cn.arrived.Store(since())
		a.cn.silent.Store(0)
	}
	return n, err
}

// errStalled is why a connection whose peer stopped inside a frame is closed.
var errStalled = errors.New("the nameserver stopped sending in the middle of a frame")

// closeIfStalled closes the connection when the peer sent part of a frame and nothing for RequestTimeout since.
// The reader would wait for the rest forever: every request on the connection would time out, and the connection,
// being neither dead nor idle, would never be replaced. A peer that is slow, or idle between frames, is left alone.
func (cn *conn) closeIfStalled() {
	if !cn.reader.InFrame() || time.Duration(since()-cn.arrived.Load()) < cn.opts.RequestTimeout {
		return
	}
	if cn.dead() || !cn.bad.CompareAndSwap(false, true) {
		return // closed already, or being closed by another request that timed out
	}
	cn.opts.Logger.Warn("closing nameserver connection stalled inside a frame", "addr", cn.nc.RemoteAddr(),
		"silentFor", time.Duration(since()-cn.arrived.Load()).Round(time.Millisecond))
	cn.close(fmt.Errorf("connection lost: %w", errStalled))
}

// errSilent is why a connection on which nothing at all arrives is closed.
var errSilent = errors.New("the nameserver sent not one byte in answer to several requests")

// closeIfSilent counts a request, sent at sent (since), that timed out, and closes the connection once
// Options.SilentTimeouts separate timeouts in a row found not one byte read since their requests were sent. A
// frozen peer (a stopped process, a dead path that drops packets without a reset) keeps the connection open and
// never answers: without this, the connection, neither dead nor idle, would be kept for good, while a redial may
// reach a restarted process. Only a request sent after the last counted timeout counts (the requests in flight
// together time out together, in one silence), so the connection goes after SilentTimeouts windows of
// RequestTimeout with nothing read, not after one pause with many requests in flight. Any byte read resets the
// count, so a peer that is merely slow, or pauses once, is left alone.
func (cn *conn) closeIfSilent(sent int64) {
	if cn.arrived.Load() >= sent {
		return
	}
	for {
		last := cn.lastSilent.Load()
		if sent <= last {
			return // the same silence as a timeout already counted
		}
		if cn.lastSilent.CompareAndSwap(last, since()) {
			break
		}
	}
	if cn.silent.Add(1) < int32(cn.opts.SilentTimeouts) {
		return
	}
	if cn.dead() || !cn.bad.CompareAndSwap(false, true) {
		return // closed already, or being closed by another request that timed out
	}
	cn.opts.Logger.Warn("closing nameserver connection that sent nothing back; redialling", "addr", cn.nc.RemoteAddr(),
		"timeouts", cn.silent.Load())
	cn.close(fmt.Errorf("connection lost: %w", errSilent))
}

// failed reports whether the connection died of a bad frame, a stall or silence.
func (cn *conn) failed() bool { return cn.bad.Load() }

// cause is the error the connection died of.
func (cn *conn) cause() error {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	return cn.err
}

func (cn *conn) dead() bool {
	select {
	case <-cn.done:
		return true
	default:
		return false
	}
}

// close marks the connection dead with err, fails every waiting request and closes the socket. Idempotent.
func (cn *conn) close(err error) {
	cn.mu.Lock()
	if cn.err != nil {
		cn.mu.Unlock()
		return
	}
	cn.err = err
	cn.pending = nil
	close(cn.done)
	cn.mu.Unlock()
	cn.nc.Close()
}

func (cn *conn) readLoop() {
	for {
		cmd, err := cn.reader.Read()
		if err != nil {
			if errors.Is(err, remoting.ErrMalformed) || errors.Is(err, remoting.ErrFrameTooLarge) {
				cn.bad.Store(true)
				cn.opts.Logger.Warn("closing nameserver connection after a bad frame", "addr", cn.nc.RemoteAddr(), "err", err)
			}
			cn.close(fmt.Errorf("connection lost: %w", err))
			return
		}
		if !cmd.IsResponse() {
			continue // the NameServer sends clients no requests; ignore rather than fail
		}
		if cn.onAnswer != nil {
			cn.answered.Do(cn.onAnswer)
		}
		cn.mu.Lock()
		ch := cn.pending[cmd.Opaque]
		delete(cn.pending, cmd.Opaque)
		cn.mu.Unlock()
		if ch != nil {
			ch <- cmd // buffered: never blocks
		}
	}
}

func (cn *conn) roundTrip(ctx context.Context, req *remoting.Command) (*remoting.Command, error) {
	frame, err := remoting.Encode(req)
	if err != nil {
		return nil, err
	}
	ch := make(chan *remoting.Command, 1)
	cn.mu.Lock()
	if cn.err != nil {
		err := cn.err
		cn.mu.Unlock()
		return nil, err
	}
	cn.pending[req.Opaque] = ch
	cn.mu.Unlock()
	sent := since()
	cn.used.Store(time.Now().UnixNano())
	forget := func() {
		cn.mu.Lock()
		delete(cn.pending, req.Opaque)
		cn.mu.Unlock()
	}

	if err := cn.send(frame); err != nil {
		forget()
		return nil, fmt.Errorf("write: %w", err)
	}

	select {
	case resp := <-ch:
		return resp, nil
	case <-cn.done:
		select { // the response may have raced the close
		case resp := <-ch:
			return resp, nil
		default:
		}
		cn.mu.Lock()
		err := cn.err
		cn.mu.Unlock()
		return nil, err
	case <-ctx.Done():
		forget()
		cn.closeIfStalled()
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			cn.closeIfSilent(sent) // a caller that gave up says nothing about the peer
		}
		return nil, fmt.Errorf("no response within the timeout: %w", ctx.Err())
	}
}

// send queues a frame and writes the queue unless another caller is already writing it. A failed write closes the
// connection, which fails every request waiting on it.
func (cn *conn) send(frame []byte) error {
	cn.wmu.Lock()
	cn.wbuf = append(cn.wbuf, frame...)
	if cn.flushing {
		cn.wmu.Unlock()
		return nil
	}
	cn.flushing = true
	for len(cn.wbuf) > 0 {
		buf := cn.wbuf
		cn.wbuf = cn.spare[:0]
		cn.wmu.Unlock()
		cn.nc.SetWriteDeadline(time.Now().Add(cn.opts.RequestTimeout))
		_, err := cn.nc.Write(buf)
		cn.wmu.Lock()
		cn.spare = buf
		if err != nil {
			cn.flushing = false
			cn.wbuf = nil
			cn.wmu.Unlock()
			cn.close(fmt.Errorf("write: %w", err))
			return err
		}
	}
	cn.flushing = false
	cn.wmu.Unlock()
	return nil
}

// epoch is this process's reference for since: a monotonic clock, which wall-clock steps do not move.
var epoch = time.Now()

// since returns the monotonic nanoseconds since epoch.
func since() int64 { return int64(time.Since(epoch)) }
