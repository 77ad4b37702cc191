package embedded

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/rocketpilot/rocketpilot/internal/testutil"
	"github.com/rocketpilot/rocketpilot/remoting"
)

// ioTimeout bounds every network wait of the tests.
const ioTimeout = 5 * time.Second

// start returns a started server, closed when the test ends.
func start(t testing.TB, opts Options) *NameServer {
	t.Helper()
	s := New(opts)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// demo returns a started server loaded with the demo data.
func demo(t testing.TB) *NameServer {
	t.Helper()
	s := start(t, Options{})
	LoadDemo(s)
	return s
}

// client is a minimal remoting client over one TCP connection: it writes remoting.Encode frames and reads with
// remoting.NewReader.
type client struct {
	t      testing.TB
	nc     net.Conn
	r      *remoting.Reader
	opaque int32
}

func dial(t testing.TB, addr string) *client {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	return &client{t: t, nc: nc, r: remoting.NewReader(nc, 0)}
}

// send writes a request with a fresh opaque and returns that opaque.
func (c *client) send(req *remoting.Command) int32 {
	c.t.Helper()
	c.opaque++
	req.Opaque = c.opaque
	frame, err := remoting.Encode(req)
	if err != nil {
		c.t.Fatal(err)
	}
	c.writeRaw(frame)
	return req.Opaque
}

func (c *client) writeRaw(b []byte) {
	c.t.Helper()
	_ = c.nc.SetWriteDeadline(time.Now().Add(ioTimeout))
	if _, err := c.nc.Write(b); err != nil {
		c.t.Fatal(err)
	}
}

// read returns the next frame, or the error that ended the stream.
func (c *client) read() (*remoting.Command, error) {
	_ = c.nc.SetReadDeadline(time.Now().Add(ioTimeout))
	return c.r.Read()
}

// call sends req and returns its response, checking the fields every response must carry.
func (c *client) call(req *remoting.Command) *remoting.Command {
	c.t.Helper()
	opaque := c.send(req)
	resp, err := c.read()
	if err != nil {
		c.t.Fatalf("code %d: %v", req.Code, err)
	}
	if resp.Opaque != opaque || !resp.IsResponse() || resp.Language != remoting.LanguageJava {
		c.t.Fatalf("response does not answer request %d: %v", opaque, resp)
	}
	return resp
}

// expectClosed checks that the server closed the connection: the next read ends the stream.
func (c *client) expectClosed() {
	c.t.Helper()
	_, err := c.read()
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		c.t.Fatalf("connection still open (read: %v)", err)
	}
	if !errors.Is(err, io.EOF) && !errors.Is(err, remoting.ErrMalformed) && !isConnError(err) {
		c.t.Fatalf("unexpected error on a closed connection: %v", err)
	}
}

func isConnError(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe)
}

func req(code int32, ext map[string]string) *remoting.Command {
	r := remoting.NewRequest(code, ext)
	r.Version = remoting.VersionClientGo
	return r
}

func routeReq(topic string) *remoting.Command {
	return req(remoting.GetRouteInfoByTopic, map[string]string{"topic": topic})
}

func wantCode(t testing.TB, resp *remoting.Command, code int32, remark string) {
	t.Helper()
	if resp.Code != code || resp.Remark != remark {
		t.Fatalf("got code %d remark %q, want code %d remark %q", resp.Code, resp.Remark, code, remark)
	}
}

// eventually polls cond every few milliseconds for up to ioTimeout.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testutil.EventuallyTrue(t, ioTimeout, what, cond)
}
