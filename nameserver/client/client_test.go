package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rocketpilot/rocketpilot/remoting"
)

// server is a loopback TCP server speaking the remoting protocol; handle decides what each request gets.
type server struct {
	ln       net.Listener
	requests atomic.Int64
	accepts  atomic.Int64
	handle   func(nc net.Conn, req *remoting.Command)
	wg       sync.WaitGroup
}

func newServer(t *testing.T, handle func(nc net.Conn, req *remoting.Command)) *server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{ln: ln, handle: handle}
	s.wg.Go(func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			s.accepts.Add(1)
			s.wg.Go(func() {
				defer nc.Close()
				r := remoting.NewReader(nc, 0)
				for {
					req, err := r.Read()
					if err != nil {
						return
					}
					s.requests.Add(1)
					s.handle(nc, req)
				}
			})
		}
	})
	t.Cleanup(func() { ln.Close(); s.wg.Wait() })
	return s
}

func (s *server) addr() string { return s.ln.Addr().String() }

func reply(nc net.Conn, req *remoting.Command, code int32, remark string, body []byte, ht remoting.SerializeType) {
	resp := remoting.NewResponse(req, code, remark)
	resp.Body, resp.HeaderType = body, ht
	frame, err := remoting.Encode(resp)
	if err != nil {
		panic(err)
	}
	nc.Write(frame)
}

func echo(nc net.Conn, req *remoting.Command) {
	reply(nc, req, remoting.Success, "", []byte(req.Ext("topic")), remoting.SerializeJSON)
}

func fastOptions() Options {
	return Options{RequestTimeout: 2 * time.Second, MinBackoff: 20 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}
}

// TestOnlyReadOnlyCodesLeave proves the allowlist: of every int16 code and the 5.x Pop range, exactly the six
// read-only codes are accepted, and a refused code never reaches the server.
func TestOnlyReadOnlyCodesLeave(t *testing.T) {
	srv := newServer(t, echo)
	c := New(srv.addr(), fastOptions())
	defer c.Close()
	var allowed []int32
	for code := int32(-40000); code <= 210000; code++ {
		if Allowed(code) {
			allowed = append(allowed, code)
		}
	}
	want := []int32{101, 105, 106, 206, 219, 224}
	if fmt.Sprint(allowed) != fmt.Sprint(want) {
		t.Fatalf("allowed codes = %v, want %v", allowed, want)
	}
	for _, code := range []int32{remoting.UpdateNamesrvConfig, remoting.PutKVConfig, remoting.DeleteKVConfig,
		remoting.RegisterBroker, remoting.UnregisterBroker, remoting.WipeWritePermOfBroker, remoting.DeleteTopicInNameSrv,
		remoting.QueryDataVersion, 0, 200050} {
		if _, err := c.Invoke(context.Background(), code, nil); !errors.Is(err, ErrCodeNotAllowed) {
			t.Fatalf("code %d: err = %v", code, err)
		}
	}
	if n := srv.accepts.Load() + srv.requests.Load(); n != 0 {
		t.Fatalf("refused codes reached the server: %d connections/requests", n)
	}
	if _, err := c.Invoke(context.Background(), remoting.GetRouteInfoByTopic, map[string]string{"topic": "t"}); err != nil {
		t.Fatal(err)
	}
	if srv.requests.Load() != 1 {
		t.Fatalf("server saw %d requests, want 1", srv.requests.Load())
	}
}

// TestMultiplexedOutOfOrder sends concurrent requests on one connection; the server answers them in reverse order.
func TestMultiplexedOutOfOrder(t *testing.T) {
	const n = 32
	var mu sync.Mutex
	var held []*remoting.Command
	srv := newServer(t, func(nc net.Conn, req *remoting.Command) {
		mu.Lock()
		defer mu.Unlock()
		held = append(held, req)
		if len(held) == n {
			for i := len(held) - 1; i >= 0; i-- {
				echo(nc, held[i])
			}
		}
	})
	c := New(srv.addr(), fastOptions())
	defer c.Close()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			topic := fmt.Sprintf("topic-%d", i)
			body, err := c.GetRouteInfoRaw(context.Background(), topic)
			if err != nil || string(body) != topic {
				errs <- fmt.Errorf("%s: body %q err %v", topic, body, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if c.Dials() != 1 {
		t.Fatalf("%d dials, want one shared connection", c.Dials())
	}
}

func TestTimeoutLeavesOthersWorking(t *testing.T) {
	srv := newServer(t, func(nc net.Conn, req *remoting.Command) {
		if req.Ext("topic") != "black-hole" {
			echo(nc, req)
		}
	})
	c := New(srv.addr(), fastOptions())
	defer c.Close()
	done := make(chan error, 1)
	go func() {
		// The caller's deadline wins over RequestTimeout.
		ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
		defer cancel()
		_, err := c.GetRouteInfoRaw(ctx, "black-hole")
		done <- err
	}()
	if body, err := c.GetRouteInfoRaw(context.Background(), "ok"); err != nil || string(body) != "ok" {
		t.Fatalf("concurrent request: %q %v", body, err)
	}
	if err := <-done; !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("unanswered request: err = %v", err)
	}
	if _, err := c.GetRouteInfoRaw(context.Background(), "after"); err != nil || c.Dials() != 1 {
		t.Fatalf("after a timeout: err %v, dials %d", err, c.Dials())
	}
}

// TestServerClosesIdleConnection: the NameServer closes connections (its 120 s idle close, or a restart); the next
// request reconnects on its own.
func TestServerClosesIdleConnection(t *testing.T) {
	srv := newServer(t, func(nc net.Conn, req *remoting.Command) {
		echo(nc, req)
		nc.Close()
	})
	c := New(srv.addr(), fastOptions())
	defer c.Close()
	for i := range 3 {
		deadline := time.Now().Add(2 * time.Second)
		for {
			_, err := c.GetRouteInfoRaw(context.Background(), "t")
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("request %d never succeeded: %v", i, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if c.Dials() < 3 {
		t.Fatalf("dials = %d, want a new connection per request", c.Dials())
	}
}

func TestIdleTimeoutRedials(t *testing.T) {
	srv := newServer(t, echo)
	opts := fastOptions()
	opts.IdleTimeout = 30 * time.Millisecond
	c := New(srv.addr(), opts)
	defer c.Close()
	c.GetRouteInfoRaw(context.Background(), "a")
	time.Sleep(60 * time.Millisecond)
	if _, err := c.GetRouteInfoRaw(context.Background(), "b"); err != nil || c.Dials() != 2 {
		t.Fatalf("after idle: err %v, dials %d", err, c.Dials())
	}
}

func TestBackoffAfterFailedDial(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	opts := fastOptions()
	opts.MinBackoff, opts.MaxBackoff = 200*time.Millisecond, time.Second
	c := New(addr, opts)
	defer c.Close()
	if _, err := c.GetRouteInfoRaw(context.Background(), "t"); err == nil || errors.Is(err, ErrBackoff) {
		t.Fatalf("first request: err = %v, want a dial error", err)
	}
	if _, err := c.GetRouteInfoRaw(context.Background(), "t"); !errors.Is(err, ErrBackoff) {
		t.Fatalf("second request: err = %v, want ErrBackoff", err)
	}
}

func TestBothResponseEncodingsAndErrors(t *testing.T) {
	route := (&remoting.TopicRouteData{
		QueueDatas:  []remoting.QueueData{{BrokerName: "b", ReadQueueNums: 4, WriteQueueNums: 4, Perm: 6}},
		BrokerDatas: []remoting.BrokerData{{Cluster: "c", BrokerName: "b", BrokerAddrs: map[int64]string{0: "10.1.1.1:10911"}}},
	})
	srv := newServer(t, func(nc net.Conn, req *remoting.Command) {
		switch req.Ext("topic") {
		case "legacy-binary":
			reply(nc, req, remoting.Success, "", route.Encode(false), remoting.SerializeRocketMQ)
		case "standard-json":
			reply(nc, req, remoting.Success, "", route.Encode(true), remoting.SerializeJSON)
		case "missing":
			reply(nc, req, remoting.TopicNotExist, "No topic route info in name server for the topic: missing", nil, remoting.SerializeRocketMQ)
		case "garbage":
			nc.Write([]byte{0, 0, 0, 8, 9, 0, 0, 1, 'x', 'x', 'x', 'x'})
		default:
			reply(nc, req, remoting.SystemError, "disable", nil, remoting.SerializeJSON)
		}
	})
	c := New(srv.addr(), fastOptions())
	defer c.Close()
	for _, topic := range []string{"legacy-binary", "standard-json"} {
		got, _, err := c.GetRouteInfo(context.Background(), topic)
		if err != nil || got.BrokerDatas[0].BrokerAddrs[0] != "10.1.1.1:10911" {
			t.Fatalf("%s: %+v %v", topic, got, err)
		}
	}
	_, _, err := c.GetRouteInfo(context.Background(), "missing")
	var re *ResponseError
	if !errors.Is(err, ErrTopicNotExist) || !errors.As(err, &re) || re.Code != 17 {
		t.Fatalf("missing topic: err = %v", err)
	}
	if _, err := c.GetAllTopicList(context.Background()); !errors.Is(err, ErrDisabled) {
		t.Fatalf("disabled list: err = %v", err)
	}
	// A malformed frame kills that connection only; the next request dials again and works.
	if _, err := c.GetRouteInfoRaw(context.Background(), "garbage"); err == nil || !errors.Is(err, remoting.ErrMalformed) {
		t.Fatalf("garbage: err = %v", err)
	}
	// The next request waits out a short backoff, then dials again and works.
	var err2 error
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if _, _, err2 = c.GetRouteInfo(context.Background(), "standard-json"); err2 == nil {
			break
		}
		if !errors.Is(err2, ErrBackoff) {
			t.Fatalf("after garbage: %v", err2)
		}
	}
	if err2 != nil || c.Dials() != 2 {
		t.Fatalf("after garbage: err %v, dials %d", err2, c.Dials())
	}
}

func TestClosedClient(t *testing.T) {
	srv := newServer(t, echo)
	c := New(srv.addr(), fastOptions())
	c.GetRouteInfoRaw(context.Background(), "t")
	c.Close()
	if _, err := c.GetRouteInfoRaw(context.Background(), "t"); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: err = %v", err)
	}
}

// TestBackoffAfterBrokenConnections: a peer that accepts connections and answers garbage is backed off like one
// that refuses them, instead of being redialled on every request.
func TestBackoffAfterBrokenConnections(t *testing.T) {
	srv := newServer(t, func(nc net.Conn, req *remoting.Command) {
		nc.Write([]byte{0, 0, 0, 8, 9, 0, 0, 1, 'x', 'x', 'x', 'x'})
	})
	opts := fastOptions()
	opts.MinBackoff, opts.MaxBackoff = 300*time.Millisecond, time.Second
	c := New(srv.addr(), opts)
	defer c.Close()
	backedOff := 0
	for range 20 {
		_, err := c.GetRouteInfoRaw(context.Background(), "t")
		if errors.Is(err, ErrBackoff) {
			backedOff++
		}
	}
	if c.Dials() > 2 || backedOff < 15 {
		t.Fatalf("%d dials and %d backed-off requests for 20 requests to a garbage-answering peer", c.Dials(), backedOff)
	}
}

// TestCancelledCallerDoesNotBackOffOthers: a caller whose context ends during the dial does not put the client
// into backoff for the callers after it.
func TestCancelledCallerDoesNotBackOffOthers(t *testing.T) {
	srv := newServer(t, echo)
	opts := fastOptions()
	opts.MinBackoff, opts.MaxBackoff = time.Second, time.Second
	c := New(srv.addr(), opts)
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.GetRouteInfoRaw(ctx, "t"); err == nil {
		t.Fatal("a cancelled caller got an answer")
	}
	if _, err := c.GetRouteInfoRaw(context.Background(), "t"); err != nil {
		t.Fatalf("the next caller: %v", err)
	}
}
