package simbroker

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/rocketpilot/rocketpilot/remoting"
)

// Pull request sys flags (PullSysFlag.java).
const (
	pullFlagCommitOffset = 1 << 0
	pullFlagSuspend      = 1 << 1
	pullFlagSubscription = 1 << 2
)

type pullHeader struct {
	group, topic string
	queueID      int32
	offset       int64
	maxMsgs      int32
	sysFlag      int32
	commitOffset int64
	suspend      time.Duration
	subscription string
}

func readPullHeader(req *remoting.Command) (pullHeader, error) {
	f := &headerFields{ext: req.ExtFields}
	h := pullHeader{
		group:        f.str("consumerGroup", true),
		topic:        f.str("topic", true),
		queueID:      f.int32("queueId", true),
		offset:       f.int64("queueOffset", true),
		maxMsgs:      f.int32("maxMsgNums", true),
		sysFlag:      f.int32("sysFlag", true),
		commitOffset: f.int64("commitOffset", true),
		suspend:      time.Duration(f.int64("suspendTimeoutMillis", true)) * time.Millisecond,
		subscription: f.str("subscription", false),
	}
	return h, f.err
}

// pull answers PULL_MESSAGE as PullMessageProcessor does. A pull that finds nothing new and carries the suspend
// flag is held (long polling, PullRequestHoldService) until a message arrives in its queue or its suspend timeout
// passes, and answered then; pull returns nil for it.
func (b *Broker) pull(c *conn, req *remoting.Command, allowSuspend bool) *remoting.Command {
	h, err := readPullHeader(req)
	if err != nil {
		return response(remoting.SystemError, err.Error())
	}
	cfg, ok := b.store.topic(h.topic)
	switch {
	case !ok:
		return response(remoting.TopicNotExist, fmt.Sprintf("topic[%s] not exist, apply first please! %s", h.topic, faqNoTopic))
	case cfg.Perm&remoting.PermRead == 0:
		return response(remoting.NoPermission, "the topic["+h.topic+"] pulling message is forbidden")
	case h.queueID < 0 || h.queueID >= cfg.ReadQueueNums:
		return response(remoting.InvalidParameter, fmt.Sprintf("queueId[%d] is illegal, topic:[%s] topicConfig.readQueueNums:[%d] consumer:[%s]",
			h.queueID, h.topic, cfg.ReadQueueNums, c.remote))
	}
	expr := "*"
	if h.sysFlag&pullFlagSubscription != 0 {
		expr = h.subscription
	} else if sub, ok := b.clients.subscription(h.group, h.topic); ok {
		expr = sub
	}
	r := b.store.get(h.topic, h.queueID, h.offset, int(max(h.maxMsgs, 1)), matchTags(expr))
	// The consumer's offset is committed by a pull that says so, on a master (storeOffsetEnable).
	if allowSuspend && h.sysFlag&pullFlagCommitOffset != 0 && b.opts.ID == 0 && h.commitOffset >= 0 {
		b.store.commitOffset(offsetKey{h.group, h.topic, h.queueID}, h.commitOffset)
	}
	var code int32
	switch r.status {
	case statusFound:
		code = remoting.Success
	case statusNoMatchedMessage:
		code = remoting.PullRetryImmediately
	case statusNoMessageInQueue, statusNoQueue:
		code = remoting.PullNotFound
		if h.offset != 0 {
			code = remoting.PullOffsetMoved
		}
	case statusOffsetOverflowOne:
		code = remoting.PullNotFound
	default: // too small, overflow badly
		code = remoting.PullOffsetMoved
	}
	if code == remoting.PullNotFound && allowSuspend && h.sysFlag&pullFlagSuspend != 0 && h.suspend > 0 {
		b.hold(c, req, h.suspend, r.arrived)
		return nil
	}
	resp := response(code, "")
	if code == remoting.Success {
		resp.Remark = "FOUND"
		size := 0
		for _, m := range r.msgs {
			size += len(m.raw)
		}
		resp.Body = make([]byte, 0, size)
		for _, m := range r.msgs {
			resp.Body = append(resp.Body, m.raw...)
		}
	}
	resp.ExtFields = map[string]string{ // PullMessageResponseHeader
		"suggestWhichBrokerId": strconv.FormatInt(b.opts.ID, 10),
		"nextBeginOffset":      strconv.FormatInt(r.next, 10),
		"minOffset":            strconv.FormatInt(r.min, 10),
		"maxOffset":            strconv.FormatInt(r.max, 10),
	}
	return resp
}

// hold answers a suspended pull when its queue grows or its timeout passes, by running it again without suspend.
func (b *Broker) hold(c *conn, req *remoting.Command, timeout time.Duration, arrived <-chan struct{}) {
	b.mu.Lock()
	stop := b.stop
	b.wg.Add(1)
	b.mu.Unlock()
	go func() {
		defer b.wg.Done()
		t := time.NewTimer(timeout)
		defer t.Stop()
		select {
		case <-arrived:
		case <-t.C:
		case <-c.done:
			return
		case <-stop:
			return
		}
		if resp := b.pull(c, req, false); resp != nil {
			b.reply(c, req, resp)
		}
	}()
}

// queryConsumerOffset answers QUERY_CONSUMER_OFFSET (ConsumerManageProcessor.queryConsumerOffset): the committed
// offset; for a group that never committed, 0 while the queue still holds its first message, else
// QUERY_NOT_FOUND.
func (b *Broker) queryConsumerOffset(req *remoting.Command) *remoting.Command {
	f := &headerFields{ext: req.ExtFields}
	k := offsetKey{f.str("consumerGroup", true), f.str("topic", true), f.int32("queueId", true)}
	if f.err != nil {
		return response(remoting.SystemError, f.err.Error())
	}
	offset, ok := b.store.consumerOffset(k)
	if !ok {
		lo, _, _ := b.store.minMax(k.topic, k.queue)
		if lo > 0 {
			return response(remoting.QueryNotFound, "Not found, V3_0_6_SNAPSHOT maybe this group consumer boot first")
		}
		offset = 0
	}
	return success(map[string]string{"offset": strconv.FormatInt(offset, 10)}, nil)
}

// updateConsumerOffset answers UPDATE_CONSUMER_OFFSET (ConsumerManageProcessor.updateConsumerOffset).
func (b *Broker) updateConsumerOffset(req *remoting.Command) *remoting.Command {
	f := &headerFields{ext: req.ExtFields}
	k := offsetKey{f.str("consumerGroup", true), f.str("topic", true), f.int32("queueId", true)}
	offset := f.int64("commitOffset", true)
	if f.err != nil {
		return response(remoting.SystemError, f.err.Error())
	}
	b.store.commitOffset(k, offset)
	return success(nil, nil)
}

// offsetQuery answers SEARCH_OFFSET_BY_TIMESTAMP, GET_MAX_OFFSET and GET_MIN_OFFSET (AdminBrokerProcessor).
func (b *Broker) offsetQuery(req *remoting.Command) *remoting.Command {
	f := &headerFields{ext: req.ExtFields}
	topic, queueID := f.str("topic", true), f.int32("queueId", true)
	var ts int64
	if req.Code == remoting.SearchOffsetByTimestamp {
		ts = f.int64("timestamp", true)
	}
	if f.err != nil {
		return response(remoting.SystemError, f.err.Error())
	}
	lo, hi, _ := b.store.minMax(topic, queueID)
	var offset int64
	switch req.Code {
	case remoting.GetMaxOffset:
		offset = hi
	case remoting.GetMinOffset:
		offset = lo
	default:
		offset = b.store.searchOffset(topic, queueID, ts)
	}
	return success(map[string]string{"offset": strconv.FormatInt(offset, 10)}, nil)
}

// messageQueue is Java's MessageQueue in JSON bodies.
type messageQueue struct {
	Topic      string `json:"topic"`
	BrokerName string `json:"brokerName"`
	QueueID    int32  `json:"queueId"`
}

// lockBatchBody is LockBatchRequestBody and UnlockBatchRequestBody.
type lockBatchBody struct {
	ConsumerGroup  string         `json:"consumerGroup"`
	ClientID       string         `json:"clientId"`
	OnlyThisBroker bool           `json:"onlyThisBroker"`
	MQSet          []messageQueue `json:"mqSet"`
}

// lockBatch answers LOCK_BATCH_MQ (AdminBrokerProcessor.lockBatchMQ): the queues now locked by the client.
func (b *Broker) lockBatch(req *remoting.Command) *remoting.Command {
	var body lockBatchBody
	if err := json.Unmarshal(req.Body, &body); err != nil {
		return response(remoting.SystemError, "lock request body: "+err.Error())
	}
	locked := []messageQueue{}
	now := time.Now()
	for _, mq := range body.MQSet {
		if b.store.tryLock(offsetKey{body.ConsumerGroup, mq.Topic, mq.QueueID}, body.ClientID, now, b.opts.LockExpiry) {
			locked = append(locked, mq)
		}
	}
	out, _ := json.Marshal(struct {
		LockOKMQSet []messageQueue `json:"lockOKMQSet"`
	}{locked})
	return success(nil, out)
}

// unlockBatch answers UNLOCK_BATCH_MQ.
func (b *Broker) unlockBatch(req *remoting.Command) *remoting.Command {
	var body lockBatchBody
	if err := json.Unmarshal(req.Body, &body); err != nil {
		return response(remoting.SystemError, "unlock request body: "+err.Error())
	}
	for _, mq := range body.MQSet {
		b.store.unlock(offsetKey{body.ConsumerGroup, mq.Topic, mq.QueueID}, body.ClientID)
	}
	return success(nil, nil)
}
