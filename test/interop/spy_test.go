package interop

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/rocketpilot/rocketpilot/remoting"
)

// spy is a loopback TCP proxy in front of a NameServer that forwards every frame unchanged, byte for byte, and
// records it decoded. A client pointed at the spy instead of the NameServer shows what really went over the wire:
// the request version it sent and the body dialect it received.
type spy struct {
	*loopListener
	t      *testing.T
	target string

	mu     sync.Mutex
	frames []spiedFrame
}

// loopListener is a loopback listener, the goroutines that serve it (wg) and their connections. It is closed,
// and they are ended, when the test ends.
type loopListener struct {
	ln    net.Listener
	wg    sync.WaitGroup
	conns connSet
}

func listenLoopback(t *testing.T, what string) *loopListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("%s listen: %v", what, err)
	}
	l := &loopListener{ln: ln}
	t.Cleanup(l.close)
	return l
}

func (l *loopListener) Addr() string { return l.ln.Addr().String() }

func (l *loopListener) close() {
	_ = l.ln.Close()
	l.conns.closeAll()
	l.wg.Wait()
}

// connSet holds a server's open connections, so that closing the server closes them.
type connSet struct {
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// track registers c; false means the set is closed, and c was closed.
func (s *connSet) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		_ = c.Close()
		return false
	}
	if s.conns == nil {
		s.conns = make(map[net.Conn]struct{})
	}
	s.conns[c] = struct{}{}
	return true
}

// forget drops c, which its user closed.
func (s *connSet) forget(c net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
}

// closeAll closes every connection tracked, and makes track close any later one.
func (s *connSet) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for c := range s.conns {
		_ = c.Close()
	}
}

type spiedFrame struct {
	fromClient bool
	cmd        *remoting.Command
}

// roundTrip is a request and the response that carried its opaque, nil when none came.
type roundTrip struct {
	req, resp *remoting.Command
}

// spyFrameLimit bounds one forwarded frame.
const spyFrameLimit = remoting.DefaultMaxFrameSize

func startSpy(t *testing.T, target string) *spy {
	t.Helper()
	s := &spy{loopListener: listenLoopback(t, "spy"), t: t, target: target}
	s.wg.Add(1)
	go s.accept()
	return s
}

func (s *spy) accept() {
	defer s.wg.Done()
	for {
		client, err := s.ln.Accept()
		if err != nil {
			return // closed
		}
		server, err := net.Dial("tcp", s.target)
		if err != nil {
			s.t.Errorf("spy: dial %s: %v", s.target, err)
			_ = client.Close()
			continue
		}
		if !s.conns.track(client) || !s.conns.track(server) {
			_ = client.Close()
			_ = server.Close()
			return
		}
		s.wg.Add(2)
		go s.pipe(client, server, true)
		go s.pipe(server, client, false)
	}
}

// pipe forwards frames from src to dst until either side closes, then closes both.
func (s *spy) pipe(src, dst net.Conn, fromClient bool) {
	defer s.wg.Done()
	defer func() { _ = src.Close(); _ = dst.Close() }()
	for {
		frame, err := readRawFrame(src)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				s.t.Logf("spy: read (from client: %v): %v", fromClient, err)
			}
			return
		}
		cmd, err := remoting.Decode(frame[4:])
		if err != nil {
			s.t.Errorf("spy: undecodable frame (from client: %v): %v", fromClient, err)
		} else {
			s.mu.Lock()
			s.frames = append(s.frames, spiedFrame{fromClient: fromClient, cmd: cmd})
			s.mu.Unlock()
		}
		if _, err := dst.Write(frame); err != nil {
			return
		}
	}
}

// readRawFrame reads one frame, its length prefix included.
func readRawFrame(r io.Reader) ([]byte, error) {
	var prefix [4]byte
	if _, err := io.ReadFull(r, prefix[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(prefix[:])
	if n < 4 || n > spyFrameLimit {
		return nil, fmt.Errorf("frame length %d out of range", n)
	}
	frame := make([]byte, 4+n)
	copy(frame, prefix[:])
	if _, err := io.ReadFull(r, frame[4:]); err != nil {
		return nil, fmt.Errorf("frame of %d bytes: %w", n, err)
	}
	return frame, nil
}

// roundTrips returns, in order, the requests with code that satisfy match (nil matches all) and their responses.
func (s *spy) roundTrips(code int32, match func(*remoting.Command) bool) []roundTrip {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []roundTrip
	for i, f := range s.frames {
		if !f.fromClient || f.cmd.IsResponse() || f.cmd.Code != code || (match != nil && !match(f.cmd)) {
			continue
		}
		rt := roundTrip{req: f.cmd}
		for _, g := range s.frames[i+1:] {
			if !g.fromClient && g.cmd.IsResponse() && g.cmd.Opaque == f.cmd.Opaque {
				rt.resp = g.cmd
				break
			}
		}
		out = append(out, rt)
	}
	return out
}

// topicIs matches requests whose topic field is topic.
func topicIs(topic string) func(*remoting.Command) bool {
	return func(c *remoting.Command) bool { return c.Ext("topic") == topic }
}
