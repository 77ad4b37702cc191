package dataplane

import (
	"cmp"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rocketpilot/rocketpilot/remoting"
	"github.com/rocketpilot/rocketpilot/remoting/message"
	"github.com/rocketpilot/rocketpilot/xds/translate"
)

// Pop mode: for a consumer group the control plane put in Pop mode on a topic (TopicRoute spec.pop), the
// application's classic consumer is served by Pop without knowing it:
//   - PULL_MESSAGE becomes POP_MESSAGE on the group's master, and its answer a pull result. The messages carry
//     offsets of the sidecar's own: a sequence per application connection and queue, in the order they were
//     handed out (starting where the application's first pull of the queue on the connection says it is), so
//     the application's commit (the smallest offset it has not consumed) says exactly which messages are done;
//   - a commit (UPDATE_CONSUMER_OFFSET, or the commit offset a pull carries) acks the messages below it, and
//     nothing else: what the application has not committed comes back after the invisible time if it dies;
//   - CONSUMER_SEND_MSG_BACK becomes CHANGE_INVISIBLE_TIME (the broker hands the message out again after the
//     retry delay), or, past the maximum reconsume times, goes to the broker, which moves the message to the
//     group's dead-letter queue, and the popped copy is acked;
//   - QUERY_CONSUMER_OFFSET is answered with the connection's own offset, GET_CONSUMER_LIST_BY_GROUP with the
//     application's own client id (so its rebalance keeps every queue: the brokers share the messages out),
//     LOCK_BATCH_MQ and UNLOCK_BATCH_MQ locally (every member holds every queue; an ordered topic's order is kept
//     by the broker's orderly Pop, which hands a queue's next messages out only once the last ones are acked or
//     their invisible time is over).
// The consumer list and locks are per group, not per topic: they are answered so only for a clustering group
// every topic of whose last heartbeat (retry topics aside) is in Pop mode. A topic served in Pop mode on a
// connection stays so until the connection closes, whatever the routes say later: its offsets are the sidecar's
// and must never reach a broker.

// popQueueKey is one queue of a topic on the connection's broker group.
type popQueueKey struct {
	group, topic string
	queue        int32
}

// popQueue is what the sidecar handed out of one queue on one application connection.
type popQueue struct {
	mode    translate.PopMode
	next    int64    // the offset the next message handed out gets
	pending []popped // handed out, not yet committed, in offset order
	seq     uint64   // Pops sent for the queue
	popping uint64   // the Pop in flight for the application's last pull, by seq; 0: none
}

// popped is a message handed out and not yet acked.
type popped struct {
	offset    int64 // the sidecar's offset, as the application knows it
	handle    message.ExtraInfo
	commitLog int64 // the broker's commit log offset: what a send-back names
	reconsume int32 // its reconsume times: past the group's maximum, a send-back dead-letters it
}

// maxPendingPerQueue bounds what one connection holds handed out of a queue and not committed (a client that
// never commits); beyond it the oldest are let go, to come back after their invisible time.
const maxPendingPerQueue = 1 << 16

// subscription is a subscribed topic's filter.
type subscription struct{ exp, expType string }

// consumerInfo is what a heartbeat says of a consumer group.
type consumerInfo struct {
	clientID   string
	clustering bool                    // BROADCASTING groups keep their own offsets: never in Pop mode
	fromFirst  bool                    // consumes from the first offset when the group has none (initMode MIN)
	topics     []string                // subscribed topics, retry topics left out
	subs       map[string]subscription // by topic
}

// heartbeat is HeartbeatData, as far as Pop mode reads it.
type heartbeat struct {
	ClientID  string `json:"clientID"`
	Consumers []struct {
		Group         string `json:"groupName"`
		Model         string `json:"messageModel"`
		From          string `json:"consumeFromWhere"`
		Subscriptions []struct {
			Topic   string `json:"topic"`
			Exp     string `json:"subString"`
			ExpType string `json:"expressionType"`
		} `json:"subscriptionDataSet"`
	} `json:"consumerDataSet"`
}

// noteHeartbeat remembers the application's client id and consumer groups, on the connection and for the proxy
// (a pull may come on a connection before its first heartbeat); the heartbeat goes on to the broker.
func (c *clientConn) noteHeartbeat(req *remoting.Command) {
	var hb heartbeat
	if err := json.Unmarshal(req.Body, &hb); err != nil {
		return // the broker will say what is wrong with it
	}
	groups := make(map[string]consumerInfo, len(hb.Consumers))
	for _, cd := range hb.Consumers {
		info := consumerInfo{clientID: hb.ClientID, clustering: cd.Model != "BROADCASTING",
			fromFirst: cd.From == "CONSUME_FROM_FIRST_OFFSET" || cd.From == "CONSUME_FROM_MIN_OFFSET", subs: map[string]subscription{}}
		for _, s := range cd.Subscriptions {
			info.subs[s.Topic] = subscription{exp: s.Exp, expType: s.ExpType}
			if !strings.HasPrefix(s.Topic, message.RetryGroupTopicPrefix) {
				info.topics = append(info.topics, s.Topic)
			}
		}
		groups[cd.Group] = info
	}
	c.popMu.Lock()
	c.consumers = groups
	c.popMu.Unlock()
	c.p.noteConsumers(groups)
}

// consumer is what the last heartbeat said of a group: on this connection, else on any.
func (c *clientConn) consumer(group string) (consumerInfo, bool) {
	c.popMu.Lock()
	info, ok := c.consumers[group]
	c.popMu.Unlock()
	if ok {
		return info, true
	}
	return c.p.consumer(group)
}

// popModeOf reports whether the group consumes the topic in Pop mode on this connection, and how.
func (c *clientConn) popModeOf(group, topic string) (translate.PopMode, bool) {
	if group == "" || topic == "" || strings.HasPrefix(topic, message.RetryGroupTopicPrefix) {
		return translate.PopMode{}, false
	}
	if info, ok := c.consumer(group); ok && !info.clustering {
		return translate.PopMode{}, false
	}
	if !c.p.routeCached(topic) {
		c.flushHeld() // the lookup may wait for the control plane
	}
	if r, err := c.p.route(topic); err == nil && r != nil {
		if mode, ok := r.Pop[group]; ok {
			return mode, true
		}
	}
	c.popMu.Lock()
	defer c.popMu.Unlock()
	mode, ok := c.popTopics[[2]string{group, topic}]
	return mode, ok
}

// groupInPop reports whether the group is a clustering group every topic of whose last heartbeat is in Pop mode,
// and returns the application's client id.
func (c *clientConn) groupInPop(group string) (clientID string, ok bool) {
	info, known := c.consumer(group)
	if !known || !info.clustering || len(info.topics) == 0 || info.clientID == "" {
		return "", false
	}
	for _, t := range info.topics {
		if _, pop := c.popModeOf(group, t); !pop {
			return "", false
		}
	}
	return info.clientID, true
}

// servePop answers the requests Pop mode changes; false leaves the request to forward.
func (c *clientConn) servePop(req *remoting.Command) bool {
	switch req.Code {
	case remoting.HeartBeat:
		c.noteHeartbeat(req)
		return false
	case remoting.PullMessage:
		mode, ok := c.popModeOf(req.Ext("consumerGroup"), req.Ext("topic"))
		if !ok {
			return false
		}
		c.popPull(req, mode)
	case remoting.QueryConsumerOffset:
		group, topic := req.Ext("consumerGroup"), req.Ext("topic")
		mode, ok := c.popModeOf(group, topic)
		if !ok {
			return false
		}
		key, err := c.popKey(req, group, topic)
		if err != nil {
			c.reply(req, errorResponse(req, remoting.SystemError, "sidecar: "+err.Error()))
			return true
		}
		// The application asks where to start a queue: it has no process queue for it (a new one, or one it let go
		// of), so what it was handed before on this connection and did not commit will never be: let it go.
		c.popMu.Lock()
		q := c.popQueueFor(key, mode, 0)
		released := len(q.pending)
		q.pending = nil
		next := q.next
		c.popMu.Unlock()
		c.p.popEvent(group, popReleased, released)
		c.p.popInflight(group, -released)
		c.answer(req, remoting.Success, "", map[string]string{"offset": strconv.FormatInt(next, 10)}, nil)
	case remoting.UpdateConsumerOffset:
		group, topic := req.Ext("consumerGroup"), req.Ext("topic")
		if _, ok := c.popModeOf(group, topic); !ok {
			return false
		}
		key, err := c.popKey(req, group, topic)
		if err == nil {
			var offset int64
			if offset, err = strconv.ParseInt(req.Ext("commitOffset"), 10, 64); err == nil {
				c.popCommit(key, offset)
			}
		}
		if err != nil {
			c.reply(req, errorResponse(req, remoting.SystemError, "sidecar: "+err.Error()))
			return true
		}
		c.answer(req, remoting.Success, "", nil, nil)
	case remoting.ConsumerSendMsgBack:
		if _, ok := c.popModeOf(req.Ext("group"), req.Ext("originTopic")); !ok {
			return false
		}
		c.popSendBack(req)
	case remoting.GetConsumerListByGroup:
		id, ok := c.groupInPop(req.Ext("consumerGroup"))
		if !ok {
			return false
		}
		body, _ := json.Marshal(map[string][]string{"consumerIdList": {id}})
		c.answer(req, remoting.Success, "", nil, body)
	case remoting.LockBatchMQ, remoting.UnlockBatchMQ:
		var body struct {
			Group string          `json:"consumerGroup"`
			MQs   json.RawMessage `json:"mqSet"`
		}
		if err := json.Unmarshal(req.Body, &body); err != nil {
			return false
		}
		if _, ok := c.groupInPop(body.Group); !ok {
			return false
		}
		if req.Code == remoting.UnlockBatchMQ {
			c.answer(req, remoting.Success, "", nil, nil)
			break
		}
		if len(body.MQs) == 0 || string(body.MQs) == "null" {
			body.MQs = json.RawMessage("[]")
		}
		c.answer(req, remoting.Success, "", nil, []byte(`{"lockOKMQSet":`+string(body.MQs)+`}`))
	default:
		return false
	}
	return true
}

// popKey is the queue a request names; queues are counted from 0.
func (c *clientConn) popKey(req *remoting.Command, group, topic string) (popQueueKey, error) {
	q, err := strconv.ParseInt(req.Ext("queueId"), 10, 32)
	if err != nil || q < 0 {
		return popQueueKey{}, errors.New("queueId " + strconv.Quote(req.Ext("queueId")) + " is not a queue")
	}
	return popQueueKey{group: group, topic: topic, queue: int32(q)}, nil
}

// popQueueFor returns a queue's state, made on first use with offsets from start, and serving mode. Call with
// popMu held.
func (c *clientConn) popQueueFor(key popQueueKey, mode translate.PopMode, start int64) *popQueue {
	q := c.popped[key]
	if q == nil {
		q = &popQueue{next: max(start, 0)}
		c.popped[key] = q
	}
	q.mode = mode
	c.popTopics[[2]string{key.group, key.topic}] = mode
	return q
}

// Pull request flags (PullSysFlag).
const (
	pullFlagCommitOffset = 1 << 0
	pullFlagSuspend      = 1 << 1
	pullFlagSubscription = 1 << 2
)

// popMaxMsgs is the most a Pop may ask for (the broker refuses more).
const popMaxMsgs = 32

// popFullWait is how long a pull waits before it is told that nothing is new when the broker's long polling is
// full: the application pulls again at once, and so would the sidecar.
const popFullWait = 500 * time.Millisecond

// popPull serves a pull by a Pop of the same queue on the group's master.
func (c *clientConn) popPull(req *remoting.Command, mode translate.PopMode) {
	group, topic := req.Ext("consumerGroup"), req.Ext("topic")
	key, err := c.popKey(req, group, topic)
	if err != nil {
		c.reply(req, errorResponse(req, remoting.SystemError, "sidecar: "+err.Error()))
		return
	}
	flags, _ := strconv.Atoi(req.Ext("sysFlag"))
	var commit int64 = -1
	if flags&pullFlagCommitOffset != 0 {
		if v, err := strconv.ParseInt(req.Ext("commitOffset"), 10, 64); err == nil {
			commit = v
		}
	}
	// A queue first pulled on this connection numbers from where the application is: its offsets go on from
	// there (after a sidecar restart, a reconnection, or Pop mode switched on under a running group), so that
	// its commits cover nothing handed out here before it consumed it.
	from, _ := strconv.ParseInt(req.Ext("queueOffset"), 10, 64)
	c.popMu.Lock()
	c.popQueueFor(key, mode, max(from, commit))
	c.popMu.Unlock()
	if commit > 0 {
		c.popCommit(key, commit)
	}
	maxMsgs, _ := strconv.Atoi(req.Ext("maxMsgNums"))
	maxMsgs = min(max(maxMsgs, 1), popMaxMsgs)
	var poll int64
	if flags&pullFlagSuspend != 0 {
		poll, _ = strconv.ParseInt(req.Ext("suspendTimeoutMillis"), 10, 64)
	}
	asked := &remoting.Command{Code: req.Code, Opaque: req.Opaque, Flag: req.Flag, HeaderType: req.HeaderType}
	c.popMu.Lock()
	q := c.popped[key]
	waiting, next := mode.Ordered && len(q.pending) > 0, q.next
	var seq uint64
	if !waiting {
		q.seq++
		seq, q.popping = q.seq, q.seq // a Pop still in flight for an earlier pull is one the application gave up
	}
	c.popMu.Unlock()
	if waiting {
		// An orderly Pop now would wait at the broker for acks only this application's next commit can bring.
		c.answerLater(asked, c.p.opts.OrderedPullWait, "sidecar: the ordered queue's last messages are not committed yet", next)
		return
	}
	info, _ := c.consumer(group)
	initMode := "1" // ConsumeInitMode.MAX
	if info.fromFirst {
		initMode = "0"
	}
	// The filter: the pull's own when it carries one (FLAG_SUBSCRIPTION), else the subscription the heartbeat
	// gave, as a broker takes it from its consumer manager.
	sub := info.subs[topic]
	if flags&pullFlagSubscription != 0 && req.Ext("subscription") != "" {
		sub = subscription{exp: req.Ext("subscription"), expType: req.Ext("expressionType")}
	}
	if sub.exp == "" {
		sub.exp = "*"
	}
	if sub.expType == "" {
		sub.expType = "TAG"
	}
	pop := remoting.NewRequest(remoting.PopMessage, map[string]string{
		"consumerGroup": group, "topic": topic, "queueId": strconv.Itoa(int(key.queue)),
		"maxMsgNums": strconv.Itoa(maxMsgs), "invisibleTime": strconv.FormatInt(mode.InvisibleTime.Milliseconds(), 10),
		"pollTime": strconv.FormatInt(poll, 10), "bornTime": strconv.FormatInt(time.Now().UnixMilli(), 10),
		"initMode": initMode, "expType": sub.expType, "exp": sub.exp, "order": strconv.FormatBool(mode.Ordered),
	})
	pop.Opaque, pop.HeaderType = req.Opaque, req.HeaderType
	addr := c.p.master(c.group)
	if addr == "" {
		c.reply(req, errorResponse(req, remoting.SystemError, "sidecar: broker group "+c.group+" has no master to pop from"))
		return
	}
	c.call(addr, pop, true, false, func(resp *remoting.Command) { c.popAnswered(asked, key, seq, resp) })
}

// answerLater tells a pull after d that nothing is new, at the queue's next offset.
func (c *clientConn) answerLater(pull *remoting.Command, d time.Duration, remark string, next int64) {
	c.p.wg.Add(1) // within serveClient's or readUpstream's count: Close waits for it
	time.AfterFunc(d, func() {
		defer c.p.wg.Done()
		c.answer(pull, remoting.PullNotFound, remark, pullHeader(next, 0), nil)
	})
}

// popAnswered turns a Pop's answer into the answer to the pull it serves, unless the application pulled the queue
// again since (it gave that pull up: what the Pop took comes back after its invisible time).
func (c *clientConn) popAnswered(pull *remoting.Command, key popQueueKey, seq uint64, resp *remoting.Command) {
	c.popMu.Lock()
	q := c.popped[key]
	current := !c.popClosed && q != nil && q.popping == seq
	var next int64
	if current {
		q.popping, next = 0, q.next
	}
	c.popMu.Unlock()
	if !current {
		if resp.Code == remoting.Success {
			n := 0
			if msgs, err := message.DecodeExts(resp.Body); err == nil {
				n = len(msgs)
			}
			c.p.popEvent(key.group, popReleased, n)
		}
		if !c.isClosed() {
			c.answer(pull, remoting.PullNotFound, "sidecar: a later pull of the queue came first", pullHeader(next, 0), nil)
		}
		return
	}
	switch resp.Code {
	case remoting.Success:
	case remoting.PollingFull:
		c.answerLater(pull, popFullWait, "sidecar: the broker's long polling is full: "+resp.Remark, next)
		return
	case remoting.PollingTimeout, remoting.PullNotFound:
		c.answer(pull, remoting.PullNotFound, "sidecar: no message popped: "+resp.Remark, pullHeader(next, 0), nil)
		return
	default:
		c.answer(pull, resp.Code, resp.Remark, nil, nil)
		return
	}
	c.popMu.Lock()
	if c.popClosed || c.popped[key] != q { // the application is gone meanwhile: what this Pop took comes back later
		c.popMu.Unlock()
		return
	}
	a, err := popToPull(resp, c.group, key.queue, q.mode.Ordered, q.next)
	var dropped []popped
	if err == nil {
		q.next += int64(len(a.handed))
		q.pending = append(q.pending, a.handed...)
		if over := len(q.pending) - maxPendingPerQueue; over > 0 {
			dropped = slices.Clone(q.pending[:over])
			q.pending = slices.Delete(q.pending, 0, over)
		}
	}
	next = q.next
	c.popMu.Unlock()
	if err != nil { // nothing handed out: what the Pop took comes back after its invisible time
		c.p.log.Warn("a Pop answer the sidecar cannot read", "group", c.group, "topic", key.topic, "err", err)
		c.answer(pull, remoting.SystemError, "sidecar: the broker's Pop answer: "+err.Error(), nil, nil)
		return
	}
	c.p.popEvent(key.group, popPopped, len(a.handed))
	c.p.popEvent(key.group, popRedelivered, a.redelivered)
	c.p.popEvent(key.group, popReleased, len(dropped))
	c.p.popInflight(key.group, len(a.handed)-len(dropped))
	c.answer(pull, remoting.Success, "FOUND", pullHeader(next, a.rest), a.body)
}

// pullAnswer is a Pop's messages made a pull's: renumbered, each with its receipt handle.
type pullAnswer struct {
	body        []byte   // the messages, stored format, with the sidecar's offsets and the pulled queue's id
	handed      []popped // what is handed out, in offset order
	rest        int64    // messages left in the queue, as the broker counted them
	redelivered int      // of those handed out, the ones popped before
}

// popToPull reads a successful Pop answer from broker group brokerName and renumbers its messages from next, as
// messages of the pulled queue.
func popToPull(resp *remoting.Command, brokerName string, queue int32, ordered bool, next int64) (pullAnswer, error) {
	answer, err := popAnswerOf(resp)
	if err != nil {
		return pullAnswer{}, err
	}
	msgs, err := message.DecodeExts(resp.Body)
	if err != nil {
		return pullAnswer{}, err
	}
	handles, err := message.SetReceiptHandles(msgs, answer, brokerName, ordered)
	if err != nil {
		return pullAnswer{}, err
	}
	a := pullAnswer{body: make([]byte, 0, len(resp.Body)+len(msgs)*64), handed: make([]popped, 0, len(msgs)), rest: answer.RestNum}
	popTime := strconv.FormatInt(answer.PopTime, 10)
	for i, m := range msgs {
		m.QueueOffset, m.QueueID = next+int64(i), queue
		if a.body, err = message.AppendExt(a.body, m); err != nil {
			return pullAnswer{}, err
		}
		a.handed = append(a.handed, popped{offset: m.QueueOffset, handle: handles[i], commitLog: m.CommitLogOffset,
			reconsume: m.ReconsumeTimes})
		if m.Properties[message.PropertyFirstPopTime] != popTime || m.ReconsumeTimes > 0 {
			a.redelivered++
		}
	}
	return a, nil
}

// pullHeader is PullMessageResponseHeader over the sidecar's offsets.
func pullHeader(next, rest int64) map[string]string {
	return map[string]string{"nextBeginOffset": strconv.FormatInt(next, 10), "minOffset": "0",
		"maxOffset": strconv.FormatInt(next+rest, 10), "suggestWhichBrokerId": "0"}
}

// popAnswerOf reads PopMessageResponseHeader.
func popAnswerOf(resp *remoting.Command) (message.PopAnswer, error) {
	var a message.PopAnswer
	var err error
	num := func(name string) int64 {
		v, e := strconv.ParseInt(resp.Ext(name), 10, 64)
		if e != nil && err == nil {
			err = errors.New("header " + name + " = " + strconv.Quote(resp.Ext(name)))
		}
		return v
	}
	a.PopTime, a.InvisibleTime, a.ReviveQid, a.RestNum = num("popTime"), num("invisibleTime"), int32(num("reviveQid")), num("restNum")
	a.StartOffsetInfo, a.MsgOffsetInfo, a.OrderCountInfo = resp.Ext("startOffsetInfo"), resp.Ext("msgOffsetInfo"), resp.Ext("orderCountInfo")
	return a, err
}

// popCommit acks the messages of a queue below the application's commit offset.
func (c *clientConn) popCommit(key popQueueKey, offset int64) {
	c.popMu.Lock()
	q := c.popped[key]
	var done []popped
	if q != nil {
		n, _ := slices.BinarySearchFunc(q.pending, offset, func(p popped, o int64) int { return cmp.Compare(p.offset, o) })
		done = slices.Clone(q.pending[:n])
		q.pending = slices.Delete(q.pending, 0, n)
	}
	c.popMu.Unlock()
	if len(done) == 0 {
		return
	}
	c.p.popInflight(key.group, -len(done))
	// The acks go in one write: held as a burst's requests are, then flushed unless a burst is being read.
	holding := c.holding
	c.holding = true
	defer func() {
		if c.holding = holding; !holding {
			c.flushHeld()
		}
	}()
	c.ack(key, done, true)
}

// ack acks messages handed out of a queue: in BATCH_ACK_MESSAGE requests, one per broker group that popped,
// unless that group answered one with "not supported" (a broker before 5.1.3), then one ACK_MESSAGE per message.
// reader says the caller is serveClient, the only one that may hold.
func (c *clientConn) ack(key popQueueKey, done []popped, reader bool) {
	byBroker := map[string][]popped{}
	for _, m := range done {
		byBroker[m.handle.BrokerName] = append(byBroker[m.handle.BrokerName], m)
	}
	for broker, msgs := range byBroker {
		if c.p.singleAcks(broker) {
			for _, m := range msgs {
				single := remoting.NewRequest(remoting.AckMessage, map[string]string{
					"consumerGroup": key.group, "topic": m.handle.TopicType.RealTopic(key.topic, key.group),
					"queueId": strconv.Itoa(int(m.handle.QueueID)), "extraInfo": m.handle.String(),
					"offset": strconv.FormatInt(m.handle.QueueOffset, 10),
				})
				c.ackTo(broker, key.group, single, popAcked, 1, reader, nil)
			}
			continue
		}
		batch := remoting.NewRequest(remoting.BatchAckMessage, nil)
		batch.Body = batchAckBody(key, broker, msgs)
		c.ackTo(broker, key.group, batch, popAcked, len(msgs), reader, func() {
			c.p.noBatchAcks(broker)
			c.ack(key, msgs, false)
		})
	}
}

// batchAckBody is BatchAckMessageRequestBody with a BatchAck per checkpoint (one queue of one Pop), in the short
// field names BatchAck's @JSONField writes; the bit set is java.util.BitSet.toByteArray's, base64 as fastjson
// writes a byte[].
func batchAckBody(key popQueueKey, broker string, msgs []popped) []byte {
	type checkpoint struct {
		mark           message.TopicType
		queue, revive  int32
		start, popTime int64
		invisible      int64
	}
	bits := map[checkpoint][]byte{}
	var order []checkpoint
	for _, m := range msgs {
		h := m.handle
		k := checkpoint{h.TopicType, h.QueueID, h.ReviveQid, h.CkQueueOffset, h.PopTime, h.InvisibleTime}
		i := h.QueueOffset - h.CkQueueOffset
		if i < 0 {
			continue // not a handle of this checkpoint: never built so by SetReceiptHandles
		}
		set, ok := bits[k]
		if !ok {
			order = append(order, k)
		}
		for int64(len(set)) <= i/8 {
			set = append(set, 0)
		}
		set[i/8] |= 1 << (i % 8)
		bits[k] = set
	}
	type batchAck struct {
		Group     string `json:"c"`
		Topic     string `json:"t"`
		Retry     string `json:"r"`
		Start     int64  `json:"so"`
		Queue     int32  `json:"q"`
		Revive    int32  `json:"rq"`
		PopTime   int64  `json:"pt"`
		Invisible int64  `json:"it"`
		BitSet    []byte `json:"b"`
	}
	body := struct {
		BrokerName string     `json:"brokerName"`
		Acks       []batchAck `json:"acks"`
	}{BrokerName: broker}
	for _, k := range order {
		body.Acks = append(body.Acks, batchAck{Group: key.group, Topic: key.topic, Retry: k.mark.String(), Start: k.start,
			Queue: k.queue, Revive: k.revive, PopTime: k.popTime, Invisible: k.invisible, BitSet: bits[k]})
	}
	out, _ := json.Marshal(body) // strings, numbers and bytes: it cannot fail
	return out
}

// ackTo sends the sidecar's own ack (or change of invisible time) of n messages to the master of the group that
// popped, counting the outcome under event. unsupported, when set, is called instead when the broker does not know
// the request. reader says the caller is serveClient.
func (c *clientConn) ackTo(brokerName, group string, ack *remoting.Command, event string, n int, reader bool, unsupported func()) {
	addr := c.p.master(brokerName)
	if addr == "" {
		c.p.popEvent(group, popAckFailed, n)
		c.p.log.Warn("no master to ack to: the message comes back after its invisible time", "broker", brokerName)
		return
	}
	c.call(addr, ack, reader, true, func(resp *remoting.Command) {
		switch {
		case resp.Code == remoting.Success:
			c.p.popEvent(group, event, n)
		case resp.Code == remoting.RequestCodeNotSupported && unsupported != nil:
			unsupported()
		default:
			c.p.popEvent(group, popAckFailed, n)
			c.p.log.Debug("ack refused: the messages come back after their invisible time", "broker", brokerName,
				"code", resp.Code, "remark", resp.Remark)
		}
	})
}

// popRetryDelays are the retry delays of the default messageDelayLevel, by delay level from 1.
var popRetryDelays = []time.Duration{time.Second, 5 * time.Second, 10 * time.Second, 30 * time.Second, time.Minute,
	2 * time.Minute, 3 * time.Minute, 4 * time.Minute, 5 * time.Minute, 6 * time.Minute, 7 * time.Minute,
	8 * time.Minute, 9 * time.Minute, 10 * time.Minute, 20 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour}

// popSendBack serves a send-back of a popped message: the broker hands it out again after the retry delay, or,
// for a message past the group's maximum reconsume times (or a negative delay level, which asks for it), moves
// it to the dead-letter queue as it does any send-back, and the popped copy is acked.
func (c *clientConn) popSendBack(req *remoting.Command) {
	group, topic := req.Ext("group"), req.Ext("originTopic")
	offset, err := strconv.ParseInt(req.Ext("offset"), 10, 64)
	if err != nil {
		c.reply(req, errorResponse(req, remoting.SystemError, "sidecar: send-back offset "+strconv.Quote(req.Ext("offset"))))
		return
	}
	m, key, found := c.findPopped(group, topic, offset, false)
	if !found {
		c.reply(req, errorResponse(req, remoting.SystemError, "sidecar: the message at commit log offset "+
			strconv.FormatInt(offset, 10)+" of "+topic+" was not popped for "+group+" on this connection (acked already?)"))
		return
	}
	level, _ := strconv.Atoi(req.Ext("delayLevel"))
	maxTimes, err := strconv.Atoi(req.Ext("maxReconsumeTimes"))
	if err != nil {
		maxTimes = 16 // the broker's default (subscription group's retryMaxTimes)
	}
	if level < 0 || int(m.reconsume) >= maxTimes {
		// To the dead-letter queue: the broker that popped it reads the message by its commit log offset and
		// moves it, as SendMessageProcessor does for any send-back past the maximum.
		addr := c.p.master(m.handle.BrokerName)
		if addr == "" {
			c.reply(req, errorResponse(req, remoting.SystemError, "sidecar: no master of group "+m.handle.BrokerName+" to dead-letter the message"))
			return
		}
		c.call(addr, req, true, false, func(resp *remoting.Command) {
			if resp.Code == remoting.Success {
				if m, key, found := c.findPopped(group, topic, offset, true); found {
					c.p.popInflight(group, -1)
					c.p.popEvent(group, popSentBack, 1)
					c.ack(key, []popped{m}, false)
				}
			}
			c.answer(req, resp.Code, resp.Remark, resp.ExtFields, resp.Body)
		})
		return
	}
	if _, _, found := c.findPopped(group, topic, offset, true); !found {
		c.answer(req, remoting.Success, "", nil, nil) // committed meanwhile: nothing to hand out again
		return
	}
	c.p.popInflight(group, -1)
	if level == 0 { // the broker's choice, as SendMessageProcessor makes it
		level = 3 + int(m.reconsume)
	}
	delay := popRetryDelays[min(level, len(popRetryDelays))-1]
	change := remoting.NewRequest(remoting.ChangeMessageInvisibleTime, map[string]string{
		"consumerGroup": group, "topic": m.handle.TopicType.RealTopic(key.topic, group),
		"queueId": strconv.Itoa(int(m.handle.QueueID)), "extraInfo": m.handle.String(),
		"offset": strconv.FormatInt(m.handle.QueueOffset, 10), "invisibleTime": strconv.FormatInt(delay.Milliseconds(), 10),
	})
	c.ackTo(m.handle.BrokerName, group, change, popSentBack, 1, true, nil)
	c.answer(req, remoting.Success, "", nil, nil)
}

// findPopped finds a message handed out on this connection by its commit log offset, and takes it out of its
// queue's pending messages when take is set.
func (c *clientConn) findPopped(group, topic string, commitLog int64, take bool) (popped, popQueueKey, bool) {
	c.popMu.Lock()
	defer c.popMu.Unlock()
	for k, q := range c.popped {
		if k.group != group || k.topic != topic {
			continue
		}
		if i := slices.IndexFunc(q.pending, func(p popped) bool { return p.commitLog == commitLog }); i >= 0 {
			m := q.pending[i]
			if take {
				q.pending = slices.Delete(q.pending, i, i+1)
			}
			return m, k, true
		}
	}
	return popped{}, popQueueKey{}, false
}

// releasePopped counts what a closed connection leaves un-acked: it comes back after its invisible time.
func (c *clientConn) releasePopped() {
	c.popMu.Lock()
	defer c.popMu.Unlock()
	for k, q := range c.popped {
		if n := len(q.pending); n > 0 {
			c.p.popEvent(k.group, popReleased, n)
			c.p.popInflight(k.group, -n)
		}
	}
	c.popped, c.popClosed = map[popQueueKey]*popQueue{}, true
}

// answer answers an application request the sidecar served itself in Pop mode.
func (c *clientConn) answer(req *remoting.Command, code int32, remark string, ext map[string]string, body []byte) {
	c.p.metrics.count(req.Code, resultPop)
	if req.IsOneway() {
		return
	}
	resp := errorResponse(req, code, remark)
	resp.ExtFields, resp.Body = ext, body
	c.write(resp)
}

// call sends a request of the sidecar's (a Pop serving a pull, an ack) to a broker: answer gets the broker's
// answer, or an error answer when the broker cannot be reached or goes away. reader says the caller is
// serveClient, the only one that may hold; own gives the request an id of the sidecar's (negative, unlike
// applications', and not one pending on the connection), else it keeps the application's.
func (c *clientConn) call(addr string, req *remoting.Command, reader, own bool, answer func(*remoting.Command)) {
	if reader && !c.hasUpstream(addr) {
		c.flushHeld() // a dial may take DialTimeout: what is held does not wait for it
	}
	up, err := c.upstream(addr)
	if err != nil {
		answer(errorResponse(req, remoting.SystemError, "sidecar: broker "+addr+" of group "+c.group+" unreachable: "+err.Error()))
		return
	}
	if !c.await(up, req, pendingRequest{answer: answer}, own) {
		answer(errorResponse(req, remoting.SystemError, "sidecar: the connection to broker "+addr+" closed"))
		return
	}
	if err := c.sendUpstream(up, req, nil, reader); err != nil {
		c.dropUpstream(up, err)
	}
}

// ownRequestID is an id for a request of the sidecar's on an upstream: negative, counting down and wrapping
// before it turns positive, and not one in flight there. Call with up.mu held.
func (c *clientConn) ownRequestID(up *upstream) int32 {
	for {
		id := c.ownID.Add(-1)
		if id >= 0 { // wrapped past the most negative id
			c.ownID.CompareAndSwap(id, 0)
			continue
		}
		if _, busy := up.pending[id]; !busy {
			return id
		}
	}
}

// isClosed reports whether the application connection is closed.
func (c *clientConn) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}
