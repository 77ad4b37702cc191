package simbroker

import (
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/rocketpilot/rocketpilot/internal/leakcheck"
	"github.com/rocketpilot/rocketpilot/remoting"
	"github.com/rocketpilot/rocketpilot/remoting/message"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// rawClient speaks the remoting protocol to a broker, one frame at a time, as a test's own client: requests go
// out, responses come back by opaque, and requests the broker sends (40) are kept.
type rawClient struct {
	t    *testing.T
	c    net.Conn
	mu   sync.Mutex
	next int32
	resp map[int32]chan *remoting.Command
	// pushed are the requests the broker sent.
	pushed chan *remoting.Command
	done   chan struct{}
}

func dial(t *testing.T, addr string) *rawClient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	rc := &rawClient{t: t, c: c, resp: map[int32]chan *remoting.Command{}, pushed: make(chan *remoting.Command, 64), done: make(chan struct{})}
	go func() {
		defer close(rc.done)
		r := remoting.NewReader(c, remoting.DefaultMaxFrameSize)
		for {
			cmd, err := r.Read()
			if err != nil {
				return
			}
			if !cmd.IsResponse() {
				rc.pushed <- cmd
				continue
			}
			rc.mu.Lock()
			ch := rc.resp[cmd.Opaque]
			delete(rc.resp, cmd.Opaque)
			rc.mu.Unlock()
			if ch != nil {
				ch <- cmd
			}
		}
	}()
	t.Cleanup(func() { c.Close(); <-rc.done })
	return rc
}

// send sends a request and returns the channel its response arrives on.
func (rc *rawClient) send(code int32, ext map[string]string, body []byte) <-chan *remoting.Command {
	rc.t.Helper()
	req := remoting.NewRequest(code, ext)
	req.Body = body
	ch := make(chan *remoting.Command, 1)
	rc.mu.Lock()
	rc.next++
	req.Opaque = rc.next
	rc.resp[req.Opaque] = ch
	rc.mu.Unlock()
	frame, err := remoting.Encode(req)
	if err != nil {
		rc.t.Fatal(err)
	}
	if _, err := rc.c.Write(frame); err != nil {
		rc.t.Fatal(err)
	}
	return ch
}

func (rc *rawClient) call(code int32, ext map[string]string, body []byte) *remoting.Command {
	rc.t.Helper()
	select {
	case r := <-rc.send(code, ext, body):
		return r
	case <-time.After(10 * time.Second):
		rc.t.Fatalf("no answer to %d", code)
		return nil
	}
}

func startBroker(t *testing.T, opts Options) *Broker {
	t.Helper()
	if opts.Name == "" {
		opts.Name, opts.Cluster = "broker-a", "DefaultCluster"
	}
	b := New(opts)
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func topicConfig(name string, queues int32) remoting.TopicConfig {
	return remoting.TopicConfig{TopicName: name, ReadQueueNums: queues, WriteQueueNums: queues, Perm: remoting.PermRead | remoting.PermWrite}
}

func sendV2(rc *rawClient, topic string, queue int, body string, props map[string]string) *remoting.Command {
	rc.t.Helper()
	return rc.call(remoting.SendMessageV2, map[string]string{"a": "pg", "b": topic, "c": "TBW102", "d": "4",
		"e": strconv.Itoa(queue), "f": "0", "g": strconv.FormatInt(time.Now().UnixMilli(), 10), "h": "0",
		"i": message.EncodeProperties(props), "j": "0", "k": "false", "m": "false"}, []byte(body))
}

func pullReq(topic string, queue int, offset int64, suspendMillis int) map[string]string {
	flag := pullFlagSubscription
	if suspendMillis > 0 {
		flag |= pullFlagSuspend
	}
	return map[string]string{"consumerGroup": "cg", "topic": topic, "queueId": strconv.Itoa(queue),
		"queueOffset": strconv.FormatInt(offset, 10), "maxMsgNums": "32", "sysFlag": strconv.Itoa(flag),
		"commitOffset": "0", "suspendTimeoutMillis": strconv.Itoa(suspendMillis), "subscription": "*", "subVersion": "0"}
}

// A sent message is pulled back byte-exact in Java's stored layout, at the offset the send answered; an empty
// queue's pull is held until a message arrives (long polling) and answered then.
func TestSendThenPull(t *testing.T) {
	b := startBroker(t, Options{Topics: []remoting.TopicConfig{topicConfig("T", 2)}})
	rc := dial(t, b.Addr())

	held := rc.send(remoting.PullMessage, pullReq("T", 1, 0, 5000), nil)
	for b.RequestCount(remoting.PullMessage) == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	select {
	case r := <-held:
		t.Fatalf("a pull of an empty queue with the suspend flag was answered at once: %d", r.Code)
	default: // suspended
	}
	resp := sendV2(rc, "T", 1, "hello", map[string]string{"TAGS": "tagA", "UNIQ_KEY": "id-1"})
	if resp.Code != remoting.Success || resp.Ext("queueId") != "1" || resp.Ext("queueOffset") != "0" {
		t.Fatalf("send: %v", resp)
	}
	select {
	case r := <-held:
		if r.Code != remoting.Success {
			t.Fatalf("held pull answered %d %s", r.Code, r.Remark)
		}
		msgs, err := message.DecodeExts(r.Body)
		if err != nil || len(msgs) != 1 || string(msgs[0].Body) != "hello" || msgs[0].Properties["UNIQ_KEY"] != "id-1" {
			t.Fatalf("pulled %v, %v", msgs, err)
		}
		if id := msgs[0].OffsetMsgID(); id != resp.Ext("msgId") {
			t.Fatalf("stored message id %s, send answered %s", id, resp.Ext("msgId"))
		}
		if r.Ext("nextBeginOffset") != "1" || r.Ext("maxOffset") != "1" {
			t.Fatalf("pull header %v", r.ExtFields)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the suspended pull was not answered when a message arrived")
	}
	// Nothing new: a pull without the suspend flag answers PULL_NOT_FOUND at once; one with it at its timeout.
	if r := rc.call(remoting.PullMessage, pullReq("T", 1, 1, 0), nil); r.Code != remoting.PullNotFound {
		t.Fatalf("pull at the end: %d", r.Code)
	}
	start := time.Now()
	if r := rc.call(remoting.PullMessage, pullReq("T", 1, 1, 200), nil); r.Code != remoting.PullNotFound || time.Since(start) < 150*time.Millisecond {
		t.Fatalf("suspended pull: %d after %v", r.Code, time.Since(start))
	}
	// An offset beyond the end is moved.
	if r := rc.call(remoting.PullMessage, pullReq("T", 1, 9, 0), nil); r.Code != remoting.PullOffsetMoved || r.Ext("nextBeginOffset") != "1" {
		t.Fatalf("pull beyond the end: %d %v", r.Code, r.ExtFields)
	}
}

// Codes the broker does not handle get Java's answer, and the connection stays usable.
func TestUnsupportedCode(t *testing.T) {
	b := startBroker(t, Options{Topics: []remoting.TopicConfig{topicConfig("T", 1)}})
	rc := dial(t, b.Addr())
	r := rc.call(12345, nil, nil)
	if r.Code != remoting.RequestCodeNotSupported || r.Remark != " request type 12345 not supported" {
		t.Fatalf("answer %d %q", r.Code, r.Remark)
	}
	if r := sendV2(rc, "T", 0, "x", nil); r.Code != remoting.Success {
		t.Fatalf("send after an unsupported code: %d %s", r.Code, r.Remark)
	}
	if b.Unsupported() != 1 || b.RequestCount(12345) != 0 || b.RequestCount(remoting.SendMessageV2) != 1 {
		t.Fatalf("counted %d unsupported, %d of 12345, %d sends", b.Unsupported(), b.RequestCount(12345), b.RequestCount(remoting.SendMessageV2))
	}
}

// A batch (320) is stored in one piece: its messages take consecutive offsets of the queue even while single
// sends to the same queue arrive on other connections, and the send answers the first one's offset.
func TestBatchIsContiguous(t *testing.T) {
	b := startBroker(t, Options{Topics: []remoting.TopicConfig{topicConfig("T", 1)}})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		rc := dial(t, b.Addr())
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				sendV2(rc, "T", 0, "single", nil)
			}
		}()
	}
	rc := dial(t, b.Addr())
	const batches, size = 20, 100
	firsts := make([]int64, batches)
	for i := range batches {
		msgs := make([]message.Message, size)
		for j := range msgs {
			msgs[j] = message.Message{Topic: "T", Body: []byte("batch-" + strconv.Itoa(i)),
				Properties: map[string]string{"UNIQ_KEY": strconv.Itoa(i*size + j)}}
		}
		body, err := message.EncodeBatch(msgs)
		if err != nil {
			t.Fatal(err)
		}
		r := rc.call(remoting.SendBatchMessage, map[string]string{"a": "pg", "b": "T", "c": "TBW102", "d": "4",
			"e": "0", "f": "0", "g": strconv.FormatInt(time.Now().UnixMilli(), 10), "h": "0", "i": "", "j": "0",
			"k": "false", "m": "true"}, body)
		if r.Code != remoting.Success {
			t.Fatalf("batch %d: %d %s", i, r.Code, r.Remark)
		}
		if firsts[i], err = strconv.ParseInt(r.Ext("queueOffset"), 10, 64); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	for i, first := range firsts {
		var msgs []*message.Ext
		for len(msgs) < size { // a pull answers at most 32 messages
			r := rc.call(remoting.PullMessage, pullReq("T", 0, first+int64(len(msgs)), 0), nil)
			got, err := message.DecodeExts(r.Body)
			if r.Code != remoting.Success || err != nil {
				t.Fatalf("pull at %d: %d %s, %v", first+int64(len(msgs)), r.Code, r.Remark, err)
			}
			msgs = append(msgs, got...)
		}
		for j, m := range msgs[:size] {
			if want := "batch-" + strconv.Itoa(i); string(m.Body) != want || m.QueueOffset != first+int64(j) {
				t.Fatalf("offset %d holds %q at %d, want %q: the batch was interleaved", first+int64(j), m.Body, m.QueueOffset, want)
			}
		}
	}
}
