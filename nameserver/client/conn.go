package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rocketpilot/rocketpilot/nameserver/remoting"
)

// conn is one TCP connection with a reader goroutine that hands responses to waiting requests by opaque.
type conn struct {
	nc      net.Conn
	opts    Options
	writeMu sync.Mutex
	used    atomic.Int64 // unix nanos of the last request

	mu      sync.Mutex
	pending map[int32]chan *remoting.Command
	err     error // set once the connection is dead
	done    chan struct{}
}

func newConn(nc net.Conn, opts Options) *conn {
	cn := &conn{nc: nc, opts: opts, pending: make(map[int32]chan *remoting.Command), done: make(chan struct{})}
	cn.used.Store(time.Now().UnixNano())
	go cn.readLoop()
	return cn
}

func (cn *conn) lastUsed() time.Time { return time.Unix(0, cn.used.Load()) }

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
	r := remoting.NewReader(cn.nc, cn.opts.MaxFrameSize)
	for {
		cmd, err := r.Read()
		if err != nil {
			if errors.Is(err, remoting.ErrMalformed) || errors.Is(err, remoting.ErrFrameTooLarge) {
				cn.opts.Logger.Warn("closing nameserver connection after a bad frame", "addr", cn.nc.RemoteAddr(), "err", err)
			}
			cn.close(fmt.Errorf("connection lost: %w", err))
			return
		}
		if !cmd.IsResponse() {
			continue // the NameServer sends clients no requests; ignore rather than fail
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
	cn.used.Store(time.Now().UnixNano())
	forget := func() {
		cn.mu.Lock()
		delete(cn.pending, req.Opaque)
		cn.mu.Unlock()
	}

	cn.writeMu.Lock()
	deadline, _ := ctx.Deadline()
	cn.nc.SetWriteDeadline(deadline)
	_, err = cn.nc.Write(frame)
	cn.writeMu.Unlock()
	if err != nil {
		forget()
		cn.close(fmt.Errorf("write: %w", err))
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
		return nil, fmt.Errorf("no response within the timeout: %w", ctx.Err())
	}
}
