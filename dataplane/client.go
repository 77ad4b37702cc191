package dataplane

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rocketpilot/rocketpilot/remoting"
	"github.com/rocketpilot/rocketpilot/remoting/message"
	"github.com/rocketpilot/rocketpilot/xds/sidecar"
	"github.com/rocketpilot/rocketpilot/xds/translate"
)

// clientConn is one application connection to a group's port, with its upstream connections, one per broker it
// reached. The application's request ids are kept; the brokers' requests to the application are given ids of the
// proxy's, remembered in pushed until answered.
type clientConn struct {
	p     *Proxy
	group string
	nc    net.Conn
	w     *frameWriter
	out   prometheus.Counter // bytes written to the application, looked up once

	// holding is set while the reader goroutine (serveClient) has more of a burst to read; held lists the
	// upstreams with requests waiting for it to end. Both are that goroutine's own: readUpstream and dropUpstream
	// never touch them, and serveClient flushes held on every way out and before anything that may block.
	holding bool
	held    []*upstream
	reading *appFrame // the frame serveClient is passing on, for a send's retry to keep

	mu     sync.Mutex
	ups    map[string]*upstream    // broker address → connection
	pushed map[int32]pushedRequest // the proxy's id → where a broker's request came from
	closed bool
	next   atomic.Int32 // ids of brokers' requests to the application
	ownID  atomic.Int32 // ids of the sidecar's own requests to brokers (pop.go): negative, unlike applications'

	// Pop mode (pop.go): what the application's last heartbeat said, and the messages handed out to it.
	popMu     sync.Mutex
	consumers map[string]consumerInfo
	popped    map[popQueueKey]*popQueue
	popTopics map[[2]string]translate.PopMode // group and topic → how they were served in Pop mode, for good
	popClosed bool                            // the connection is closed: nothing more is handed out on it
}

// pushedRequest is a request a broker sent to the application, awaiting its answer.
type pushedRequest struct {
	up     *upstream
	opaque int32
}

// appFrame is a frame read from the application, recycled once nothing refers to it: the reader (serveClient)
// until it has passed the frame on, and a send's retry until the send is answered. The frames are most of what the
// proxy allocates, and so of its garbage collection's work. A frame whose count never reaches zero (a command
// kept elsewhere, an id the application reused while in flight) is left to the collector.
type appFrame struct {
	buf  []byte
	refs atomic.Int32
}

var appFrames = sync.Pool{New: func() any { return new(appFrame) }}

// release drops one reference, recycling the frame with the last.
func (f *appFrame) release() {
	if f.refs.Add(-1) == 0 && cap(f.buf) <= maxReusedFrame {
		f.buf = f.buf[:0]
		appFrames.Put(f)
	}
}

// pendingRequest is what the proxy keeps of a forwarded request until its answer: what an error answer needs (its
// head: code, id, flags), and when it left; for a send that may go elsewhere if its broker refuses it, the send.
// It is kept by value, with no allocation of its own: there is one per message.
type pendingRequest struct {
	code, opaque, flag int32
	headerType         remoting.SerializeType
	sent               time.Time
	retry              sendRetry
	// answer takes the broker's answer to a request of the sidecar's own (pop.go) instead of the application.
	answer func(*remoting.Command)
}

// head is the request as an error answer needs it.
func (pr *pendingRequest) head() *remoting.Command {
	return &remoting.Command{Code: pr.code, Opaque: pr.opaque, Flag: pr.flag, HeaderType: pr.headerType}
}

// upstream is one connection to a broker on behalf of one application connection.
type upstream struct {
	addr string
	nc   net.Conn
	w    *frameWriter

	mu      sync.Mutex
	pending map[int32]pendingRequest // the application's requests awaiting an answer, by id
	dead    bool
}

// serveClient proxies one application connection to the group's port until either side ends it.
func (p *Proxy) serveClient(group string, nc net.Conn) {
	c := &clientConn{p: p, group: group, nc: nc, w: newFrameWriter(nc, p.opts.WriteTimeout), ups: map[string]*upstream{},
		pushed: map[int32]pushedRequest{}, out: p.metrics.bytes.WithLabelValues("out"), popped: map[popQueueKey]*popQueue{},
		popTopics: map[[2]string]translate.PopMode{}}
	p.metrics.connections.WithLabelValues("application").Inc()
	defer p.metrics.connections.WithLabelValues("application").Dec()
	defer c.close()
	r := remoting.NewReader(nc, p.opts.MaxFrameSize)
	in := p.metrics.bytes.WithLabelValues("in")
	for {
		f := appFrames.Get().(*appFrame)
		f.refs.Store(1)
		cmd, raw, err := readRequest(r, f.buf[:0])
		if err != nil {
			f.release()
			c.flushHeld() // what the burst held before a bad frame or the end still goes on
			return
		}
		f.buf = raw
		in.Add(float64(len(raw)))
		// While more of a burst is already read, requests wait in their upstream's buffer: the burst goes on in
		// one write per broker.
		c.holding = r.Buffered()
		switch {
		case cmd.IsResponse():
			c.answerPushed(cmd)
			f.release()
		case c.servePop(cmd): // which may keep the command, and so its frame: not recycled
		default:
			c.reading = f
			c.forward(cmd, raw, nil, true)
			c.reading = nil
			f.release()
		}
		if !c.holding {
			c.flushHeld()
		}
	}
}

// sendKeys are the extFields a send is routed by (SendMessageRequestHeaderV2's short names, and V1's): the only
// ones read of a send that goes on as it came, most of its header being the message's properties.
var sendKeys = []string{"b", "e", "topic", "queueId"}

// readRequest reads an application's frame into buf when it fits: a send with only its sendKeys read
// (remoting.DecodePartial: the rest is read if the send must be encoded again), anything else whole. raw is the
// frame, which the command refers to.
func readRequest(r *remoting.Reader, buf []byte) (*remoting.Command, []byte, error) {
	raw, err := r.ReadRaw(buf)
	if err != nil {
		return nil, nil, err
	}
	cmd, err := remoting.DecodePartial(raw[4:], sendKeysOf)
	return cmd, raw, err
}

// sendKeysOf is what readRequest reads of a command's extFields: a send's sendKeys, all of anything else (the
// application's answers to brokers' requests carry a response code, never a send's).
func sendKeysOf(code int32) []string {
	if isSend(code) {
		return sendKeys
	}
	return nil
}

// forward sends one application request to the broker its route picks, or answers it with the error a broker
// would send. raw is the request's frame as it arrived, passed on as it is unless the request was rewritten. A
// send whose broker cannot be reached goes to another writable group of its route at once (an ordered topic's
// stays: its queue is its order), so a stopped broker costs no send before the route drops it. avoid lists groups
// the send must not go to (nil at first); reader says the caller is serveClient, the only one that may hold.
func (c *clientConn) forward(req *remoting.Command, raw []byte, avoid map[string]bool, reader bool) {
	for {
		addr, group, rewritten, fail := c.target(req, avoid, reader)
		if rewritten {
			raw = nil
		}
		if fail != nil {
			c.reply(req, fail)
			return
		}
		if reader && !c.hasUpstream(addr) {
			c.flushHeld() // a dial may take DialTimeout: what is held does not wait for it
		}
		up, err := c.upstream(addr)
		if err != nil {
			if isSend(req.Code) && group != "" {
				if avoid == nil {
					avoid = map[string]bool{}
				}
				avoid[group] = true
				c.p.log.Debug("send failing over", "group", group, "addr", addr, "err", err)
				continue
			}
			c.reply(req, errorResponse(req, remoting.SystemError, "sidecar: broker "+addr+" of group "+group+" unreachable: "+err.Error()))
			return
		}
		if !req.IsOneway() {
			pr := pendingRequest{}
			if isSend(req.Code) && group != "" && len(avoid) == 0 { // a send routed by its route, not yet retried: kept whole to retry
				pr.retry = sendRetry{req: req, group: group}
				if reader && c.reading != nil {
					c.reading.refs.Add(1)
					pr.retry.frame = c.reading
				}
			}
			if !c.await(up, req, pr, false) {
				pr.done()
				c.reply(req, errorResponse(req, remoting.SystemError, "sidecar: the connection to broker "+addr+" closed"))
				return
			}
		} else {
			c.p.metrics.count(req.Code, resultOneway)
		}
		if err := c.sendUpstream(up, req, raw, reader); err != nil {
			c.dropUpstream(up, err)
		}
		return
	}
}

// await records a request sent on an upstream, awaiting its answer (pr's retry or answer set by the caller), and
// counts it in flight; own gives it an id of the sidecar's first. It is false when the upstream is closed.
func (c *clientConn) await(up *upstream, req *remoting.Command, pr pendingRequest, own bool) bool {
	up.mu.Lock()
	defer up.mu.Unlock()
	if up.dead {
		return false
	}
	if own {
		req.Opaque = c.ownRequestID(up)
	}
	if _, reused := up.pending[req.Opaque]; !reused { // an id reused while in flight is counted once
		c.p.inflight.Add(1)
	}
	pr.sent = time.Now()
	pr.code, pr.opaque, pr.flag, pr.headerType = req.Code, req.Opaque, req.Flag, req.HeaderType
	up.pending[req.Opaque] = pr
	return true
}

// sendRetry is what a send needs to go again elsewhere: the request as sent (nil for any other request), the
// group that refused it, and the frame the request refers to, released when the send is answered.
type sendRetry struct {
	req   *remoting.Command
	group string
	frame *appFrame
}

// done releases what the request held once it is answered (or will never be).
func (pr *pendingRequest) done() {
	if pr.retry.frame != nil {
		pr.retry.frame.release()
	}
}

// elsewhere reports whether the send's route has a writable group besides the one that refused it; without one
// the application gets the broker's own answer.
func (c *clientConn) elsewhere(sr sendRetry) bool {
	topicKey, _ := sendFields(sr.req)
	r, err := c.p.route(sr.req.Ext(topicKey))
	if err != nil || r == nil {
		return false
	}
	_, ok := pickSendGroup(r, c.group, false, map[string]bool{sr.group: true})
	return ok
}

// refusedSend is the broker's answer NO_PERMISSION to a send: the broker did not store it (its topic or itself
// is not writable now, a change the route has not brought yet), so it can go to another writable group once.
func refusedSend(pr pendingRequest, resp *remoting.Command) bool {
	return pr.retry.req != nil && resp.Code == remoting.NoPermission
}

// sendUpstream writes a request to a broker, or, for serveClient (reader), holds it there while a burst is being
// read.
func (c *clientConn) sendUpstream(up *upstream, cmd *remoting.Command, raw []byte, reader bool) error {
	if raw == nil {
		var err error
		if raw, err = remoting.Encode(cmd); err != nil {
			return err
		}
	}
	if !reader || !c.holding {
		return up.w.write(raw)
	}
	if !slices.Contains(c.held, up) {
		c.held = append(c.held, up)
	}
	return up.w.hold(raw)
}

// flushHeld writes what the burst left waiting in upstream buffers.
func (c *clientConn) flushHeld() {
	for _, up := range c.held {
		if err := up.w.flush(); err != nil {
			c.dropUpstream(up, err)
		}
	}
	clear(c.held)
	c.held = c.held[:0]
}

func isSend(code int32) bool {
	return code == remoting.SendMessage || code == remoting.SendMessageV2 || code == remoting.SendBatchMessage
}

// target is the broker address a request goes to, and its group: for a send, a writable master of the topic's
// route outside avoid (the queue rewritten when the group changes; group "" when the route cannot say); for
// anything else, the master of the port's group.
func (c *clientConn) target(req *remoting.Command, avoid map[string]bool, reader bool) (addr, group string, rewritten bool, fail *remoting.Command) {
	group = c.group
	switch req.Code {
	case remoting.SendMessage, remoting.SendMessageV2, remoting.SendBatchMessage:
		return c.sendTarget(req, avoid, reader)
	case remoting.AckMessage, remoting.ChangeMessageInvisibleTime, remoting.BatchAckMessage:
		// A Pop ack goes back to the group that popped, whichever port it came on: the receipt handle (or the
		// batch's body) names it.
		name, err := poppedBy(req)
		if err != nil {
			return "", "", false, errorResponse(req, remoting.SystemError, "sidecar: "+err.Error())
		}
		if c.p.broker(name) == "" {
			return "", "", false, errorResponse(req, remoting.SystemError, "sidecar: the receipt handle names broker group "+name+
				", which no route the sidecar was served has")
		}
		group = name
	}
	if addr := c.p.broker(group); addr != "" {
		return addr, group, false, nil
	}
	return "", "", false, errorResponse(req, remoting.SystemError, "sidecar: no broker of group "+group+" in the served routes")
}

// poppedBy is the broker group a Pop ack is for: the brokerName of the receipt handle (AckMessageRequestHeader,
// ChangeInvisibleTimeRequestHeader: ExtraInfoUtil's format) or of a batch ack's body (BatchAckMessageRequestBody).
func poppedBy(req *remoting.Command) (string, error) {
	if req.Code == remoting.BatchAckMessage {
		var body struct {
			BrokerName string `json:"brokerName"`
		}
		if err := json.Unmarshal(req.Body, &body); err != nil || body.BrokerName == "" {
			return "", fmt.Errorf("a batch ack without a brokerName (%v)", err)
		}
		return body.BrokerName, nil
	}
	info, err := message.ParseExtraInfo(req.Ext("extraInfo"))
	if err != nil {
		return "", fmt.Errorf("the receipt handle %q: %w", req.Ext("extraInfo"), err)
	}
	return info.BrokerName, nil
}

// sendFields names a send's topic and queue fields: SendMessageRequestHeaderV2's short names, or V1's.
func sendFields(req *remoting.Command) (topicKey, queueKey string) {
	if _, v2 := req.ExtFields["b"]; v2 {
		return "b", "e"
	}
	return "topic", "queueId"
}

func (c *clientConn) sendTarget(req *remoting.Command, avoid map[string]bool, reader bool) (addr, group string, rewritten bool, fail *remoting.Command) {
	topicKey, queueKey := sendFields(req)
	topic := req.Ext(topicKey)
	if reader && !c.p.routeCached(topic) {
		c.flushHeld() // the lookup may wait for the control plane: what is held does not wait with it
	}
	r, err := c.p.route(topic)
	if err != nil || r == nil {
		// A topic the control plane does not route (a retry topic, say), or no answer from it: the broker the
		// client chose decides.
		if addr := c.p.master(c.group); addr != "" {
			return addr, "", false, nil
		}
		reason := "no route"
		if err != nil {
			reason = err.Error()
		}
		return "", "", false, errorResponse(req, remoting.SystemError, "sidecar: cannot route a send to "+topic+": "+reason)
	}
	ordered := r.Data.OrderTopicConf != ""
	if ordered && avoid[c.group] {
		return "", "", false, errorResponse(req, remoting.SystemError, "sidecar: broker group "+c.group+
			" of ordered topic["+topic+"] unreachable; its queue is not moved")
	}
	pick, ok := pickSendGroup(r, c.group, ordered, avoid)
	if !ok {
		if ordered {
			return "", "", false, errorResponse(req, remoting.NoPermission, "sidecar: broker group "+c.group+
				" is not writable for ordered topic["+topic+"]; its queue is not moved")
		}
		if len(avoid) > 0 {
			return "", "", false, errorResponse(req, remoting.SystemError, "sidecar: no writable broker of topic["+topic+"] reachable")
		}
		return "", "", false, errorResponse(req, remoting.NoPermission, "sidecar: no writable broker serves topic["+topic+"]")
	}
	if ordered {
		return pick.Addr, "", false, nil // no failover, no retry elsewhere: the queue is the order
	}
	if pick.BrokerName != c.group {
		q := writeQueues(r.Data, pick.BrokerName)
		if q <= 0 {
			return "", "", false, errorResponse(req, remoting.NoPermission, "sidecar: broker group "+pick.BrokerName+" has no write queue of topic["+topic+"]")
		}
		if err := req.Complete(); err != nil { // its other fields go too
			return "", "", false, errorResponse(req, remoting.SystemError, "sidecar: "+err.Error())
		}
		ext := make(map[string]string, len(req.ExtFields))
		for k, v := range req.ExtFields {
			ext[k] = v
		}
		ext[queueKey] = strconv.Itoa(rand.IntN(int(q)))
		req.ExtFields = ext
		return pick.Addr, pick.BrokerName, true, nil
	}
	return pick.Addr, pick.BrokerName, false, nil
}

// pickSendGroup picks where a send goes among the route's writable masters outside avoid: for an ordered topic the
// client's group or none (a queue must stay a queue); else the client's group when it is one of them and no
// weights are set, or one drawn by weight (equal chances without weights).
// It runs for every send, so it allocates nothing: it walks the route's targets once to count and once to pick.
func pickSendGroup(r *sidecar.Route, client string, ordered bool, avoid map[string]bool) (translate.Target, bool) {
	eligible := func(t translate.Target) bool { return t.BrokerID == 0 && !avoid[t.BrokerName] }
	if ordered { // the client's queue is the key's order: its group, or nowhere
		for _, t := range r.Send {
			if eligible(t) && t.BrokerName == client {
				return t, true
			}
		}
		return translate.Target{}, false
	}
	var count int
	var total uint64
	for _, t := range r.Send {
		if eligible(t) {
			count++
			total += uint64(t.Weight)
		}
	}
	if count == 0 {
		return translate.Target{}, false
	}
	if total == 0 { // no weights: the client's group if it can, else any, with equal chances
		for _, t := range r.Send {
			if eligible(t) && t.BrokerName == client {
				return t, true
			}
		}
		n := rand.IntN(count)
		for _, t := range r.Send {
			if eligible(t) {
				if n == 0 {
					return t, true
				}
				n--
			}
		}
	}
	n := rand.Uint64N(total)
	var last translate.Target
	for _, t := range r.Send {
		if eligible(t) {
			if n < uint64(t.Weight) {
				return t, true
			}
			n -= uint64(t.Weight)
			last = t
		}
	}
	return last, true
}

// writeQueues is a group's write queue count in a route.
func writeQueues(data *remoting.TopicRouteData, group string) int32 {
	for _, q := range data.QueueDatas {
		if q.BrokerName == group {
			return q.WriteQueueNums
		}
	}
	return 0
}

func (c *clientConn) hasUpstream(addr string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ups[addr] != nil
}

// upstream returns the connection to a broker, dialled on first use.
func (c *clientConn) upstream(addr string) (*upstream, error) {
	c.mu.Lock()
	if up := c.ups[addr]; up != nil || c.closed {
		c.mu.Unlock()
		if up == nil {
			return nil, errors.New("closed")
		}
		return up, nil
	}
	c.mu.Unlock()
	nc, err := net.DialTimeout("tcp", addr, c.p.opts.DialTimeout)
	if err != nil {
		return nil, err
	}
	up := &upstream{addr: addr, nc: nc, w: newFrameWriter(nc, c.p.opts.WriteTimeout), pending: map[int32]pendingRequest{}}
	c.p.metrics.connections.WithLabelValues("broker").Inc()
	c.mu.Lock()
	if old := c.ups[addr]; old != nil || c.closed {
		c.mu.Unlock()
		nc.Close()
		if old == nil {
			return nil, errors.New("closed")
		}
		return old, nil
	}
	c.ups[addr] = up
	c.p.wg.Add(1) // within serveClient's own count, so never after Close's Wait saw zero
	c.mu.Unlock()
	go func() {
		defer c.p.wg.Done()
		c.readUpstream(up)
	}()
	return up, nil
}

// readUpstream passes a broker's answers and requests to the application until the connection ends. An answer
// to the application's request goes on as it came, of its header only the code, id and flags read, from a buffer
// the next frame reuses (the application's writer copies it); anything the sidecar reads further is read whole
// from a copy.
func (c *clientConn) readUpstream(up *upstream) {
	r := remoting.NewReader(up.nc, c.p.opts.MaxFrameSize)
	var buf []byte
	var head remoting.Command // each frame's code, id and flags, read into the same command
	for {
		if !r.Buffered() {
			c.flushOut() // the broker's burst is read: write it on
		}
		raw, err := r.ReadRaw(buf)
		cmd := &head
		if err == nil {
			if cap(raw) <= maxReusedFrame {
				buf = raw[:0]
			}
			err = remoting.DecodePartialInto(&head, raw[4:], remoting.Nothing)
		}
		if err != nil {
			c.flushOut()
			c.dropUpstream(up, err)
			return
		}
		var pr pendingRequest
		var ok bool
		if cmd.IsResponse() {
			up.mu.Lock()
			pr, ok = up.pending[cmd.Opaque]
			delete(up.pending, cmd.Opaque)
			up.mu.Unlock()
			if !ok {
				continue
			}
			c.p.inflight.Add(-1)
			if pr.answer == nil && !refusedSend(pr, cmd) {
				pr.done()
				c.p.metrics.answered(pr.code, cmd.Code, pr.sent)
				c.holdFrame(raw) // the application's own id: as it came; written when the burst is read
				continue
			}
		}
		if cmd, err = remoting.Decode(bytes.Clone(raw[4:])); err != nil {
			pr.done()
			c.flushOut()
			c.dropUpstream(up, err)
			return
		}
		if cmd.IsResponse() {
			if pr.answer != nil { // the sidecar's own request: its latency, not an application request
				c.p.metrics.observe(pr.code, pr.sent)
				pr.answer(cmd)
				continue
			}
			if c.elsewhere(pr.retry) {
				// Refused, and sent again, avoiding the group that refused it; the second answer is the
				// application's.
				c.p.metrics.count(pr.code, resultRetried)
				c.flushOut()
				c.forward(pr.retry.req, nil, map[string]bool{pr.retry.group: true}, false)
				pr.done()
				continue
			}
			pr.done()
			c.p.metrics.answered(pr.code, cmd.Code, pr.sent)
			c.holdFrame(raw)
			continue
		}
		// A broker's request to the application: an id of the proxy's, so that two brokers' ids cannot clash.
		id := c.next.Add(1)
		if !cmd.IsOneway() {
			c.mu.Lock()
			c.pushed[id] = pushedRequest{up: up, opaque: cmd.Opaque}
			c.mu.Unlock()
		}
		cmd.Opaque = id
		c.write(cmd)
	}
}

// maxReusedFrame is the largest frame buffer readUpstream keeps for the next frame.
const maxReusedFrame = 64 << 10

// answerPushed passes the application's answer to a broker's request back to that broker, with its own id.
func (c *clientConn) answerPushed(resp *remoting.Command) {
	c.mu.Lock()
	pr, ok := c.pushed[resp.Opaque]
	delete(c.pushed, resp.Opaque)
	c.mu.Unlock()
	if !ok {
		return
	}
	resp.Opaque = pr.opaque
	if err := c.sendUpstream(pr.up, resp, nil, true); err != nil {
		c.dropUpstream(pr.up, err)
	}
}

// dropUpstream closes a broker connection and answers what it still owed the application, so that no request
// waits for its timeout.
func (c *clientConn) dropUpstream(up *upstream, cause error) {
	up.mu.Lock()
	if up.dead {
		up.mu.Unlock()
		return
	}
	up.dead = true
	pending := up.pending
	up.pending = nil
	c.p.inflight.Add(-int64(len(pending)))
	up.mu.Unlock()
	up.nc.Close()
	c.p.metrics.connections.WithLabelValues("broker").Dec()
	c.mu.Lock()
	if c.ups[up.addr] == up {
		delete(c.ups, up.addr)
	}
	for id, pr := range c.pushed { // the broker that asked is gone: its requests will not be answered
		if pr.up == up {
			delete(c.pushed, id)
		}
	}
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return
	}
	for _, pr := range pending {
		pr.done()
		if pr.answer != nil {
			pr.answer(errorResponse(pr.head(), remoting.SystemError, "sidecar: the connection to broker "+up.addr+" closed: "+cause.Error()))
			continue
		}
		c.reply(pr.head(), errorResponse(pr.head(), remoting.SystemError, "sidecar: the connection to broker "+up.addr+" closed: "+cause.Error()))
	}
}

// reply answers a request the proxy could not forward (or whose broker went away), counted as refused.
func (c *clientConn) reply(req *remoting.Command, resp *remoting.Command) {
	c.p.metrics.count(req.Code, resultRefused)
	if req.IsOneway() {
		return
	}
	c.write(resp)
}

func (c *clientConn) write(cmd *remoting.Command) {
	frame, err := remoting.Encode(cmd)
	if err != nil {
		c.p.log.Warn("encode a frame for the application", "err", err)
		return
	}
	c.writeFrame(frame)
}

func (c *clientConn) writeFrame(frame []byte) {
	c.out.Add(float64(len(frame)))
	if err := c.w.write(frame); err != nil {
		c.nc.Close()
	}
}

// holdFrame queues a frame for the application until flushOut.
func (c *clientConn) holdFrame(frame []byte) {
	c.out.Add(float64(len(frame)))
	if err := c.w.hold(frame); err != nil {
		c.nc.Close()
	}
}

// flushOut writes what holdFrame queued.
func (c *clientConn) flushOut() {
	if err := c.w.flush(); err != nil {
		c.nc.Close()
	}
}

// close ends the application connection and its upstream connections.
func (c *clientConn) close() {
	c.mu.Lock()
	c.closed = true
	ups := c.ups
	c.ups = map[string]*upstream{}
	c.mu.Unlock()
	c.nc.Close()
	for _, up := range ups {
		c.dropUpstream(up, net.ErrClosed)
	}
	c.releasePopped()
}
