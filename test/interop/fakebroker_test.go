package interop

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/rocketpilot/rocketpilot/nameserver/remoting"
)

// Broker request codes the fake broker understands (RequestCode.java).
const (
	codeSendMessage   int32 = 10
	codeSendMessageV2 int32 = 310
	codeHeartbeat     int32 = 34
)

// fakeBroker is a loopback TCP server speaking just enough of the broker side of the remoting protocol for a
// producer: it stores nothing, answers SEND_MESSAGE (10) and SEND_MESSAGE_V2 (310) with SUCCESS and the
// fields of a SendMessageResponseHeader (msgId, queueId, queueOffset), and every other request (heartbeat,
// unregister...) with a bare SUCCESS. It records what it received.
type fakeBroker struct {
	t  *testing.T
	ln net.Listener
	wg sync.WaitGroup

	mu     sync.Mutex
	sends  []receivedSend
	codes  map[int32]int
	conns  map[net.Conn]struct{}
	closed bool
	offset int64 // next queue offset handed out
}

// receivedSend is one send request as the broker read it, and what it answered.
type receivedSend struct {
	Code       int32
	Topic      string
	Group      string
	QueueID    int
	BrokerName string
	Properties map[string]string
	Body       string

	// The answer.
	MsgID       string
	QueueOffset int64
}

func startFakeBroker(t *testing.T) *fakeBroker {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("fake broker listen: %v", err)
	}
	b := &fakeBroker{t: t, ln: ln, codes: make(map[int32]int), conns: make(map[net.Conn]struct{})}
	b.wg.Add(1)
	go b.accept()
	t.Cleanup(b.close)
	return b
}

func (b *fakeBroker) Addr() string { return b.ln.Addr().String() }

func (b *fakeBroker) close() {
	_ = b.ln.Close()
	b.mu.Lock()
	b.closed = true
	for c := range b.conns {
		_ = c.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
}

// Sends returns the send requests received so far.
func (b *fakeBroker) Sends() []receivedSend {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]receivedSend(nil), b.sends...)
}

// Count returns how many requests of code were received.
func (b *fakeBroker) Count(code int32) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.codes[code]
}

func (b *fakeBroker) accept() {
	defer b.wg.Done()
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return // closed
		}
		b.mu.Lock()
		if b.closed {
			b.mu.Unlock()
			_ = c.Close()
			return
		}
		b.conns[c] = struct{}{}
		b.wg.Add(1)
		b.mu.Unlock()
		go b.serve(c)
	}
}

func (b *fakeBroker) serve(c net.Conn) {
	defer b.wg.Done()
	defer func() {
		_ = c.Close()
		b.mu.Lock()
		delete(b.conns, c)
		b.mu.Unlock()
	}()
	r := remoting.NewReader(c, 0)
	for {
		req, err := r.Read()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				b.t.Logf("fake broker %s: read: %v", b.Addr(), err)
			}
			return
		}
		if req.IsResponse() {
			continue
		}
		resp := b.handle(req)
		if req.IsOneway() {
			continue
		}
		frame, err := remoting.Encode(resp)
		if err != nil {
			b.t.Errorf("fake broker %s: encode response: %v", b.Addr(), err)
			return
		}
		if _, err := c.Write(frame); err != nil {
			return
		}
	}
}

func (b *fakeBroker) handle(req *remoting.Command) *remoting.Command {
	resp := remoting.NewResponse(req, remoting.Success, "")
	resp.HeaderType = req.HeaderType
	b.mu.Lock()
	defer b.mu.Unlock()
	b.codes[req.Code]++
	if req.Code != codeSendMessage && req.Code != codeSendMessageV2 {
		return resp
	}
	s, err := parseSend(req)
	if err != nil {
		b.t.Errorf("fake broker %s: %v", b.Addr(), err)
		return remoting.NewResponse(req, remoting.SystemError, err.Error())
	}
	s.QueueOffset = b.offset
	b.offset++
	s.MsgID = offsetMsgID(b.ln.Addr().(*net.TCPAddr), s.QueueOffset)
	b.sends = append(b.sends, s)
	resp.ExtFields = map[string]string{
		"msgId":       s.MsgID,
		"queueId":     strconv.Itoa(s.QueueID),
		"queueOffset": strconv.FormatInt(s.QueueOffset, 10),
	}
	return resp
}

// parseSend reads a SendMessageRequestHeader (code 10) or its abbreviated V2 form (code 310).
func parseSend(req *remoting.Command) (receivedSend, error) {
	name := map[string]string{"topic": "topic", "group": "producerGroup", "queue": "queueId", "props": "properties", "broker": "bname"}
	if req.Code == codeSendMessageV2 {
		name = map[string]string{"topic": "b", "group": "a", "queue": "e", "props": "i", "broker": "n"}
	}
	s := receivedSend{
		Code:       req.Code,
		Topic:      req.Ext(name["topic"]),
		Group:      req.Ext(name["group"]),
		BrokerName: req.Ext(name["broker"]),
		Properties: parseProperties(req.Ext(name["props"])),
		Body:       string(req.Body),
	}
	q, err := strconv.Atoi(req.Ext(name["queue"]))
	if err != nil {
		return s, fmt.Errorf("send request without a valid queue id: %v", req)
	}
	s.QueueID = q
	if s.Topic == "" {
		return s, fmt.Errorf("send request without a topic: %v", req)
	}
	return s, nil
}

// parseProperties splits a message's properties string: name \x01 value \x02, repeated (MessageDecoder.java).
func parseProperties(s string) map[string]string {
	m := make(map[string]string)
	for _, kv := range strings.Split(s, "\x02") {
		if k, v, ok := strings.Cut(kv, "\x01"); ok {
			m[k] = v
		}
	}
	return m
}

// offsetMsgID is the broker's message id: store host IPv4, port and commit-log offset in hex
// (MessageDecoder.createMessageId).
func offsetMsgID(host *net.TCPAddr, offset int64) string {
	ip := host.IP.To4()
	return fmt.Sprintf("%02X%02X%02X%02X%08X%016X", ip[0], ip[1], ip[2], ip[3], host.Port, offset)
}
