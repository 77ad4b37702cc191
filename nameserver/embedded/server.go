package embedded

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rocketpilot/rocketpilot/remoting"
)

// Options configures a NameServer.
type Options struct {
	// Addr is the listen address; "" means "127.0.0.1:0".
	Addr string
	// MaxFrameSize bounds a request frame; 0 means remoting.DefaultMaxFrameSize. A larger frame closes the
	// connection, as Java's decoder does.
	MaxFrameSize int
	// HeaderType is the header encoding of every response: the server's own configured serialization (JSON by
	// default), not the request's, as Java does.
	HeaderType remoting.SerializeType
	// Logger receives connection and protocol events; nil discards them.
	Logger *slog.Logger

	// Version is the version field of responses (Java sends its own MQVersion ordinal); 0 by default.
	Version int32
	// OrderMessageEnable mirrors NamesrvConfig.orderMessageEnable: 105 answers then carry the topic's value in
	// KV namespace ORDER_TOPIC_CONFIG as orderTopicConf. Off by default, as in Java.
	OrderMessageEnable bool
	// IdleTimeout closes a connection that sent nothing for this long (Java closes idle channels after 120 s);
	// 0 never closes idle connections.
	IdleTimeout time.Duration

	// BrokerTimeout is how long a broker registered over TCP (103) is kept without a new registration when its
	// header gives no heartbeatTimeoutMillis; 0 means DefaultBrokerTimeout (120 s, as in Java).
	BrokerTimeout time.Duration
	// ScanInterval is how often brokers registered over TCP are checked for expiry
	// (NamesrvConfig.scanNotActiveBrokerInterval); 0 means DefaultScanInterval (5 s, as in Java).
	ScanInterval time.Duration
	// DeleteTopicWithBrokerRegistration mirrors NamesrvConfig.deleteTopicWithBrokerRegistration: a master's
	// registration then removes its queue data from the topics it no longer lists. Off by default, as in Java,
	// where such queue data stays until the group leaves.
	DeleteTopicWithBrokerRegistration bool
}

// NameServer is a simulated RocketMQ NameServer. Its methods are safe for concurrent use.
type NameServer struct {
	opts Options
	log  *slog.Logger
	st   *state

	// Behaviour knobs.
	allTopicListOff atomic.Bool
	topicListOff    atomic.Bool
	latency         atomic.Int64 // time.Duration
	corrupt         atomic.Int64 // responses still to corrupt
	counts          sync.Map     // int32 → *atomic.Int64
	distinctCodes   atomic.Int64 // entries in counts
	inFlight        atomic.Int64 // requests being handled (latency included), all connections
	maxInFlight     atomic.Int64

	// Lifecycle, guarded by mu.
	mu       sync.Mutex
	started  bool
	closed   bool
	addr     string
	ln       net.Listener
	lnDone   chan struct{} // closed when the accept loop of ln has returned
	conns    map[*conn]struct{}
	wg       sync.WaitGroup
	shutdown chan struct{} // closed by Close
}

// conn is one client connection.
type conn struct {
	nc   net.Conn
	wmu  sync.Mutex // one response frame at a time
	once sync.Once
	done chan struct{} // closed when the server closes the connection
	// registered is set once a broker registered over this connection: closing it then unregisters brokers.
	registered atomic.Bool
}

func (c *conn) close() {
	c.once.Do(func() {
		close(c.done)
		_ = c.nc.Close()
	})
}

// New returns a NameServer with empty state; Start makes it listen.
func New(opts Options) *NameServer {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &NameServer{
		opts:     opts,
		log:      log,
		st:       newState(),
		conns:    make(map[*conn]struct{}),
		shutdown: make(chan struct{}),
	}
}

// Start listens on Options.Addr and serves in background goroutines.
func (s *NameServer) Start() error {
	switch s.opts.HeaderType {
	case remoting.SerializeJSON:
	case remoting.SerializeRocketMQ:
		if s.opts.Version < math.MinInt16 || s.opts.Version > math.MaxInt16 {
			return fmt.Errorf("embedded nameserver: version %d does not fit a binary header", s.opts.Version)
		}
	default:
		return fmt.Errorf("embedded nameserver: unknown header serialization %s", s.opts.HeaderType)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("embedded nameserver: closed")
	}
	if s.started {
		return errors.New("embedded nameserver: already started")
	}
	addr := s.opts.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("embedded nameserver: %w", err)
	}
	s.started = true
	s.addr = ln.Addr().String()
	s.serveLocked(ln)
	s.wg.Add(1)
	go s.scanLoop()
	s.log.Info("embedded nameserver listening", "addr", s.addr, "header", s.opts.HeaderType)
	return nil
}

// Addr returns the address the server listens on, host:port, once started ("" before).
func (s *NameServer) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Close stops listening, closes every connection and waits for all goroutines. It is idempotent.
func (s *NameServer) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.shutdown)
	done := s.stopListeningLocked()
	s.dropLocked()
	s.mu.Unlock()
	if done != nil {
		<-done
	}
	s.wg.Wait()
	return nil
}

// Pause simulates an outage: the server stops listening and drops every connection, keeping its state. Dials
// are refused until Resume. Brokers registered over TCP lose their connections and are removed with them.
func (s *NameServer) Pause() {
	s.mu.Lock()
	done := s.stopListeningLocked()
	s.dropLocked()
	s.mu.Unlock()
	if done != nil {
		<-done
	}
	s.log.Info("embedded nameserver paused", "addr", s.Addr())
}

// Resume listens again on the same address as before Pause. It is a no-op while listening.
func (s *NameServer) Resume() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return errors.New("embedded nameserver: closed")
	case !s.started:
		return errors.New("embedded nameserver: not started")
	case s.ln != nil:
		return nil
	}
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("embedded nameserver: resume on %s: %w", s.addr, err)
	}
	s.serveLocked(ln)
	s.log.Info("embedded nameserver resumed", "addr", s.addr)
	return nil
}

// DropConnections closes every open client connection now; the listener stays.
func (s *NameServer) DropConnections() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropLocked()
}

// Connections returns the number of open client connections.
func (s *NameServer) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

func (s *NameServer) dropLocked() {
	for c := range s.conns {
		c.close()
	}
}

// stopListeningLocked closes the listener and returns the channel closed when its accept loop has returned.
func (s *NameServer) stopListeningLocked() chan struct{} {
	if s.ln == nil {
		return nil
	}
	_ = s.ln.Close()
	s.ln = nil
	return s.lnDone
}

func (s *NameServer) serveLocked(ln net.Listener) {
	done := make(chan struct{})
	s.ln, s.lnDone = ln, done
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(done)
		s.acceptLoop(ln)
	}()
}

func (s *NameServer) acceptLoop(ln net.Listener) {
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Temporary failures such as running out of file descriptors: wait a little, as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("accept failed", "err", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
				continue
			case <-s.shutdown:
				return
			}
		}
		backoff = 0
		c := &conn{nc: nc, done: make(chan struct{})}
		s.mu.Lock()
		if s.ln != ln { // paused or closed since Accept returned
			s.mu.Unlock()
			_ = nc.Close()
			continue
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serveConn(c)
	}
}

// perConnConcurrency bounds the requests one connection has in progress. Like Java's processor pool, requests are
// handled concurrently and answered in the order they finish, not the order they came.
const perConnConcurrency = 16

// serveConn reads requests and answers each as it is done until the stream ends or breaks.
func (s *NameServer) serveConn(c *conn) {
	defer s.wg.Done()
	defer s.channelDestroyed(c) // after every request of the connection is done
	var inflight sync.WaitGroup
	defer inflight.Wait() // runs after the close below, which unblocks writes to a client that stopped reading
	defer func() {
		c.close()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
	remote := c.nc.RemoteAddr().String()
	s.log.Debug("connection opened", "remote", remote)
	r := remoting.NewReader(c.nc, s.opts.MaxFrameSize)
	sem := make(chan struct{}, perConnConcurrency)
	for {
		if s.opts.IdleTimeout > 0 {
			_ = c.nc.SetReadDeadline(time.Now().Add(s.opts.IdleTimeout))
		}
		req, err := r.Read()
		if err != nil {
			s.logReadError(c, remote, err)
			if errors.Is(err, io.EOF) {
				inflight.Wait() // a client that half-closed after its requests still gets the answers
			}
			return
		}
		if req.IsResponse() {
			// Java looks the opaque up among its own pending requests and only logs when none matches.
			s.log.Warn("response received from a client, ignored", "remote", remote, "cmd", req.String())
			continue
		}
		s.count(req.Code)
		select {
		case sem <- struct{}{}:
		case <-c.done:
			return
		}
		inflight.Go(func() {
			defer func() { <-sem }()
			defer s.inFlight.Add(-1)
			for n, m := s.inFlight.Add(1), s.maxInFlight.Load(); n > m && !s.maxInFlight.CompareAndSwap(m, n); m = s.maxInFlight.Load() {
			}
			resp := s.handle(c, req)
			if req.IsOneway() || !s.wait(c) {
				return
			}
			c.wmu.Lock()
			err := s.write(c, resp)
			c.wmu.Unlock()
			if err != nil {
				s.log.Debug("write failed", "remote", remote, "err", err)
				c.close()
			}
		})
	}
}

func (s *NameServer) logReadError(c *conn, remote string, err error) {
	select {
	case <-c.done:
		s.log.Debug("connection closed by the server", "remote", remote)
		return
	default:
	}
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF):
		s.log.Debug("connection closed by the client", "remote", remote)
	case errors.Is(err, remoting.ErrMalformed), errors.Is(err, remoting.ErrFrameTooLarge):
		s.log.Warn("bad frame, closing the connection", "remote", remote, "err", err)
	case errors.As(err, &ne) && ne.Timeout():
		s.log.Info("idle connection closed", "remote", remote, "idle", s.opts.IdleTimeout)
	default:
		s.log.Debug("read failed, closing the connection", "remote", remote, "err", err)
	}
}

// wait applies the configured latency; false means the connection was closed meanwhile.
func (s *NameServer) wait(c *conn) bool {
	d := time.Duration(s.latency.Load())
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.done:
		return false
	}
}

// corruptFrame is a complete frame whose JSON header is cut short by garbage: remoting.Reader reads it and rejects
// it with ErrMalformed.
var corruptFrame = func() []byte {
	header := []byte("{\"code\":0,\"flag\":1,\"opaque\":\xff\xfe\x00garbage")
	f := make([]byte, 0, 8+len(header))
	f = append(f, 0, 0, 0, byte(4+len(header)))
	f = append(f, 0, 0, 0, byte(len(header)))
	return append(f, header...)
}()

func (s *NameServer) takeCorrupt() bool {
	for {
		n := s.corrupt.Load()
		if n <= 0 {
			return false
		}
		if s.corrupt.CompareAndSwap(n, n-1) {
			return true
		}
	}
}

func (s *NameServer) write(c *conn, resp *remoting.Command) error {
	var frame []byte
	if s.takeCorrupt() {
		frame = corruptFrame
	} else {
		var err error
		if frame, err = remoting.Encode(resp); err != nil {
			// Cannot happen for the codes this server answers; answer what Java would for an internal failure.
			s.log.Error("encode response", "err", err, "cmd", resp.String())
			fallback := &remoting.Command{Code: remoting.SystemError, Language: remoting.LanguageJava, Opaque: resp.Opaque,
				Flag: remoting.FlagResponse, Remark: err.Error(), HeaderType: resp.HeaderType}
			if frame, err = remoting.Encode(fallback); err != nil {
				return err
			}
		}
	}
	_, err := c.nc.Write(frame)
	return err
}

// SetAllTopicListEnabled turns 206 on or off (NamesrvConfig.enableAllTopicList); when off it answers
// SYSTEM_ERROR "disable". On by default.
func (s *NameServer) SetAllTopicListEnabled(on bool) { s.allTopicListOff.Store(!on) }

// SetTopicListEnabled turns 224 on or off (NamesrvConfig.enableTopicList); when off it answers SYSTEM_ERROR
// "disable". On by default.
func (s *NameServer) SetTopicListEnabled(on bool) { s.topicListOff.Store(!on) }

// SetLatency delays every response by d (0 for none), each request on its own, as a slow server would.
func (s *NameServer) SetLatency(d time.Duration) { s.latency.Store(int64(d)) }

// CorruptResponses writes the next n responses, on any connection, as a malformed frame that remoting.Reader
// rejects with remoting.ErrMalformed, instead of the real answer. n <= 0 cancels pending corruption.
func (s *NameServer) CorruptResponses(n int) { s.corrupt.Store(int64(max(n, 0))) }

// MaxInFlight returns the most requests the server was handling at once, over all connections, since it started.
func (s *NameServer) MaxInFlight() int64 { return s.maxInFlight.Load() }

// RequestCount returns how many requests of a code were received, one-way ones included. Only the first 65536
// distinct codes seen are counted.
func (s *NameServer) RequestCount(code int32) int64 {
	if v, ok := s.counts.Load(code); ok {
		return v.(*atomic.Int64).Load()
	}
	return 0
}

// maxDistinctCodes bounds the counter table, so that a client sending random codes cannot grow it without limit.
const maxDistinctCodes = 1 << 16

func (s *NameServer) count(code int32) {
	if v, ok := s.counts.Load(code); ok {
		v.(*atomic.Int64).Add(1)
		return
	}
	if s.distinctCodes.Load() >= maxDistinctCodes {
		return
	}
	v, loaded := s.counts.LoadOrStore(code, new(atomic.Int64))
	if !loaded {
		s.distinctCodes.Add(1)
	}
	v.(*atomic.Int64).Add(1)
}
