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

	"github.com/rocketpilot/rocketpilot/remoting"
)

// Broker request codes the fake broker understands (RequestCode.java).
const (
	codeSendMessage   int32 = 10
	codeSendMessageV2 int32 = 310
	codeHeartbeat     int32 = 34
)

// frameServer is a loopback TCP server that reads remoting frames and writes back, for every request that is not
// one-way, the frame respond returns for it. It closes its connections when the test ends.
type frameServer struct {
	*loopListener
	t       *testing.T
	name    string // for logs
	respond func(*remoting.Command) ([]byte, error)
}

// listenFrameServer returns a frameServer listening on a loopback port; start makes it serve.
func listenFrameServer(t *testing.T, name string) *frameServer {
	t.Helper()
	return &frameServer{loopListener: listenLoopback(t, name), t: t, name: name}
}

// start accepts connections and answers their requests with respond.
func (s *frameServer) start(respond func(*remoting.Command) ([]byte, error)) {
	s.respond = respond
	s.wg.Add(1)
	go s.accept()
}

func (s *frameServer) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil || !s.conns.track(c) {
			return // closed
		}
		s.wg.Add(1)
		go s.serve(c)
	}
}

func (s *frameServer) serve(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		_ = c.Close()
		s.conns.forget(c)
	}()
	r := remoting.NewReader(c, 0)
	for {
		req, err := r.Read()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				s.t.Logf("%s %s: read: %v", s.name, s.Addr(), err)
			}
			return
		}
		if req.IsResponse() {
			continue
		}
		frame, err := s.respond(req)
		if err != nil {
			s.t.Errorf("%s %s: answer %v: %v", s.name, s.Addr(), req, err)
			return
		}
		if req.IsOneway() {
			continue
		}
		if _, err := c.Write(frame); err != nil {
			return
		}
	}
}

// fakeBroker is a frameServer speaking just enough of the broker side of the remoting protocol for a producer: it
// stores nothing, answers SEND_MESSAGE (10) and SEND_MESSAGE_V2 (310) with SUCCESS and the fields of a
// SendMessageResponseHeader (msgId, queueId, queueOffset), and every other request (heartbeat, unregister...) with
// a bare SUCCESS. It records what it received.
type fakeBroker struct {
	*frameServer

	mu     sync.Mutex
	sends  []receivedSend
	codes  map[int32]int
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
	b := &fakeBroker{frameServer: listenFrameServer(t, "fake broker"), codes: make(map[int32]int)}
	b.start(func(req *remoting.Command) ([]byte, error) { return remoting.Encode(b.handle(req)) })
	return b
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
