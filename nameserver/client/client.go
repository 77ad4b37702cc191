// Package client is a read-only RocketMQ NameServer client: one multiplexed TCP connection per NameServer,
// requests matched to responses by opaque, per-request timeouts, reconnection with backoff.
//
// It can only send the read-only request codes a route watcher needs (105, 106, 206, 224, 101, 219). The allowlist
// is enforced in Invoke, before anything touches the network: the NameServer has no authentication, and write codes
// such as 318 (UPDATE_NAMESRV_CONFIG) have been the way in for remote code execution.
package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rocketpilot/rocketpilot/remoting"
)

// readOnlyCodes are the only request codes the client sends.
var readOnlyCodes = map[int32]string{
	remoting.GetRouteInfoByTopic:           "GET_ROUTEINFO_BY_TOPIC",
	remoting.GetBrokerClusterInfo:          "GET_BROKER_CLUSTER_INFO",
	remoting.GetAllTopicListFromNameServer: "GET_ALL_TOPIC_LIST_FROM_NAMESERVER",
	remoting.GetTopicsByCluster:            "GET_TOPICS_BY_CLUSTER",
	remoting.GetKVConfig:                   "GET_KV_CONFIG",
	remoting.GetKVListByNamespace:          "GET_KVLIST_BY_NAMESPACE",
}

// Allowed reports whether the client may send a request code.
func Allowed(code int32) bool {
	_, ok := readOnlyCodes[code]
	return ok
}

// Errors. Responses with a non-success code are returned as *ResponseError, which matches these with errors.Is.
var (
	ErrCodeNotAllowed = errors.New("request code is not on the read-only allowlist")
	ErrTopicNotExist  = errors.New("topic does not exist")
	ErrDisabled       = errors.New("disabled on the NameServer")
	ErrNotFound       = errors.New("not found")
	ErrClosed         = errors.New("client closed")
	ErrBackoff        = errors.New("waiting to reconnect")
)

// ResponseError is a NameServer answer other than SUCCESS.
type ResponseError struct {
	Code   int32
	Remark string
}

func (e *ResponseError) Error() string {
	return fmt.Sprintf("nameserver answered code %d: %s", e.Code, e.Remark)
}

// Is matches the sentinel errors by response code.
func (e *ResponseError) Is(target error) bool {
	switch target {
	case ErrTopicNotExist:
		return e.Code == remoting.TopicNotExist
	case ErrNotFound:
		return e.Code == remoting.QueryNotFound
	case ErrDisabled:
		return e.Code == remoting.SystemError && e.Remark == "disable"
	}
	return false
}

// Options tune a Client. Zero values take the defaults in parentheses.
type Options struct {
	DialTimeout    time.Duration // (3s)
	RequestTimeout time.Duration // per request, unless the context ends sooner (3s)
	// IdleTimeout closes a connection unused for this long before the next request, so a request never races
	// the NameServer's own 120 s idle close (90s).
	IdleTimeout time.Duration
	MinBackoff  time.Duration // first wait after a failed dial (100ms)
	MaxBackoff  time.Duration // longest wait between dials (10s)
	// SilentTimeouts is how many separate request timeouts in a row (each of a request sent after the previous
	// one counted: requests in flight together time out in one silence) may find not one byte received on their
	// connection before it is closed and redialled: a NameServer that froze holding the connection open would
	// otherwise keep it, and every request would time out, for good (3).
	SilentTimeouts int
	// MaxFrameSize bounds a response frame (remoting.DefaultMaxFrameSize).
	MaxFrameSize int
	// HeaderType is the header encoding of requests; responses are read in either.
	HeaderType remoting.SerializeType
	// Version is the request version. The default, remoting.VersionStandardJSON, asks for standard JSON bodies.
	Version int32
	Logger  *slog.Logger
}

func (o *Options) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.DialTimeout, 3*time.Second)
	def(&o.RequestTimeout, 3*time.Second)
	def(&o.IdleTimeout, 90*time.Second)
	def(&o.MinBackoff, 100*time.Millisecond)
	def(&o.MaxBackoff, 10*time.Second)
	if o.SilentTimeouts <= 0 {
		o.SilentTimeouts = 3
	}
	if o.MaxFrameSize <= 0 {
		o.MaxFrameSize = remoting.DefaultMaxFrameSize
	}
	if o.Version == 0 {
		o.Version = remoting.VersionStandardJSON
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Client talks to one NameServer. It is safe for concurrent use; concurrent requests share one connection.
type Client struct {
	addr   string
	opts   Options
	opaque atomic.Int32

	mu        sync.Mutex
	conn      *conn
	dialing   chan struct{} // closed when the dial under way ends
	closed    bool
	backoff   time.Duration
	nextDial  time.Time
	lastError error
	dials     int
}

// New returns a client for the NameServer at addr. It connects on the first request.
func New(addr string, opts Options) *Client {
	opts.defaults()
	return &Client{addr: addr, opts: opts}
}

// Addr is the NameServer's address.
func (c *Client) Addr() string { return c.addr }

// Dials returns how many connections the client has opened.
func (c *Client) Dials() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dials
}

// Close closes the connection; later requests fail with ErrClosed.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closed = true
	cn := c.conn
	c.conn = nil
	c.mu.Unlock()
	if cn != nil {
		cn.close(ErrClosed)
	}
	return nil
}

// Invoke sends a read-only request and waits for its response, until ctx's deadline or, without one,
// RequestTimeout. Codes outside the allowlist fail with ErrCodeNotAllowed without touching the network. The opaque,
// language, version and header type are set here.
func (c *Client) Invoke(ctx context.Context, code int32, ext map[string]string) (*remoting.Command, error) {
	name, ok := readOnlyCodes[code]
	if !ok {
		return nil, fmt.Errorf("request code %d: %w", code, ErrCodeNotAllowed)
	}
	if _, has := ctx.Deadline(); !has {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.opts.RequestTimeout)
		defer cancel()
	}
	cn, err := c.connection(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s to %s: %w", name, c.addr, err)
	}
	req := &remoting.Command{
		Code:       code,
		Language:   remoting.LanguageGo,
		Version:    c.opts.Version,
		Opaque:     c.opaque.Add(1),
		ExtFields:  ext,
		HeaderType: c.opts.HeaderType,
	}
	resp, err := cn.roundTrip(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("%s to %s: %w", name, c.addr, err)
	}
	return resp, nil
}

// fail schedules the next dial after a growing backoff. Callers hold c.mu.
func (c *Client) fail(err error) {
	if c.backoff == 0 {
		c.backoff = c.opts.MinBackoff
	} else {
		c.backoff = min(2*c.backoff, c.opts.MaxBackoff)
	}
	c.nextDial, c.lastError = time.Now().Add(c.backoff), err
}

// connection returns the live connection, dialing when there is none and the backoff allows it. One caller dials
// at a time, outside the lock; the others wait for it within their own deadlines.
func (c *Client) connection(ctx context.Context) (*conn, error) {
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return nil, ErrClosed
		}
		if cn := c.conn; cn != nil {
			if !cn.dead() && time.Since(cn.lastUsed()) < c.opts.IdleTimeout {
				c.mu.Unlock()
				return cn, nil
			}
			c.conn = nil
			if cn.dead() && (cn.failed() || time.Since(cn.opened) < time.Second) {
				// A peer that accepts connections and then breaks them is backed off like one that refuses them.
				c.fail(cn.cause())
			} else {
				cn.close(errors.New("idle connection closed"))
			}
		}
		if wait := time.Until(c.nextDial); wait > 0 {
			err := fmt.Errorf("%w for %v after: %v", ErrBackoff, wait.Round(time.Millisecond), c.lastError)
			c.mu.Unlock()
			return nil, err
		}
		if dialing := c.dialing; dialing != nil {
			c.mu.Unlock()
			select {
			case <-dialing:
				continue // look again: connected, or backing off
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		done := make(chan struct{})
		c.dialing = done
		c.mu.Unlock()

		d := net.Dialer{Timeout: c.opts.DialTimeout}
		nc, err := d.DialContext(ctx, "tcp", c.addr)

		c.mu.Lock()
		c.dialing = nil
		close(done)
		switch {
		case err != nil && ctx.Err() != nil:
			// This caller gave up, not the NameServer: no backoff for everyone else.
			c.mu.Unlock()
			return nil, err
		case err != nil:
			c.fail(err)
			c.mu.Unlock()
			return nil, err
		case c.closed:
			c.mu.Unlock()
			nc.Close()
			return nil, ErrClosed
		}
		c.dials++
		c.conn = newConn(nc, c.opts)
		if c.backoff > 0 {
			// Reset only once the connection has proven itself by answering (see conn.answered).
			c.conn.onAnswer = func() {
				c.mu.Lock()
				c.backoff, c.lastError = 0, nil
				c.mu.Unlock()
			}
		}
		cn := c.conn
		c.mu.Unlock()
		c.opts.Logger.Debug("connected to nameserver", "addr", c.addr)
		return cn, nil
	}
}
