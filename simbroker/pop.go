package simbroker

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rocketpilot/rocketpilot/remoting"
	"github.com/rocketpilot/rocketpilot/remoting/message"
)

// Pop consumption: POP_MESSAGE (200050), ACK_MESSAGE (200051), CHANGE_MESSAGE_INVISIBLETIME (200053) and
// BATCH_ACK_MESSAGE (200151), as PopMessageProcessor, AckMessageProcessor and ChangeInvisibleTimeProcessor handle
// them on a Java 5 broker with its default configuration (no KV pop service, no pop buffer merge, retry topic V1).
//
// Java keeps a pop's state in its revive log: a checkpoint per queue popped (the messages and the time they become
// visible again) and an ack per acked message, which PopReviveService matches once the invisible time has run out,
// putting every unacked message into the group's pop retry topic %RETRY%{group}_{topic} with reconsumeTimes+1.
// Here the checkpoints live in memory and a timer per checkpoint revives it at popTime+invisibleTime. A
// queue's consume offset for the group is committed as its checkpoints finish in pop order (acked or revived), as
// PopBufferMergeService commits them; where the next pop reads is past the last checkpoint.
//
// Orderly pop (order=true) follows ConsumerOrderInfoManager: a queue with unacked messages still invisible is
// blocked for the group; its consume offset moves only as acks complete in order, and once the invisible time
// is over the same messages are popped again with their consume counts in orderCountInfo.

// Java's constants for pop.
const (
	responseNoMessage       int32 = 208 // ResponseCode.NO_MESSAGE
	popOrderReviveQueue           = message.PopOrderReviveQueue
	popReviveQueueNum             = 8  // BrokerConfig.reviveQueueNum
	popFromRetryProbability       = 20 // BrokerConfig.popFromRetryProbability, in percent
	popMaxMsgNums                 = 32
	popTimeoutTooMuch             = 500                         // ms: PopMessageRequestHeader.isTimeoutTooMuch
	popTimeoutMargin              = 50                          // ms: PopRequest.isTimeout answers this much before the poll time is over
	consumeInitModeMin            = 0                           // ConsumeInitMode.MIN; MAX is 1
	notSetRemark                  = "not set any response code" // RemotingCommand.createResponseCommand(Class)
)

// popRetryTopic is the pop retry topic of a topic and group (KeyBuilder.buildPopRetryTopic with
// enableRetryTopicV2 false, Java's default).
func popRetryTopic(topic, group string) string { return RetryTopicPrefix + group + "_" + topic }

// popKey names a group's pop state in one queue (Java's lock key topic@group@queueId).
type popKey struct {
	topic, group string
	queue        int32
}

func (k popKey) String() string { return k.topic + "@" + k.group + "@" + strconv.Itoa(int(k.queue)) }

// ckKey names a checkpoint as the revive service merges acks into it: queue, start offset and pop time.
type ckKey struct {
	popKey
	start, popTime int64
}

// checkpoint is PopCheckPoint: the messages one pop took from one queue.
type checkpoint struct {
	key       ckKey
	invisible int64
	reviveQid int32
	offsets   []int64 // queue offsets of the messages, in order
	acked     uint64  // bit i: offsets[i] is acked
	next      int64   // the queue offset after the pop (GetMessageResult.nextBeginOffset)
	revived   bool
	ordered   bool // part of its queue's offset commit order (a pop's, not a change of invisible time's)
}

func (ck *checkpoint) done() bool {
	return ck.revived || ck.acked == uint64(1)<<len(ck.offsets)-1
}

// orderInfo is ConsumerOrderInfoManager.OrderInfo: the last orderly pop of a queue by a group.
type orderInfo struct {
	attemptID   string
	popTime     int64
	invisible   int64
	offsets     []int64 // queue offsets (Java stores them as differences from the first)
	nextVisible map[int64]int64
	consumed    map[int64]int32
	commitBits  uint64
}

// popState is a broker group's pop state; a slave shares its master's, as it shares the store.
type popState struct {
	mu      sync.Mutex
	queues  map[popKey][]*checkpoint // in pop order, until committed
	cks     map[ckKey]*checkpoint    // not yet done
	order   map[popKey]*orderInfo
	seq     int64         // PopMessageProcessor.ckMessageNumber: picks the revive queue
	changed chan struct{} // closed and replaced when a held pop may find something: a revive, an orderly ack
}

func (p *popState) notify() {
	close(p.changed)
	p.changed = make(chan struct{})
}

func newPopState() *popState {
	return &popState{queues: map[popKey][]*checkpoint{}, cks: map[ckKey]*checkpoint{}, order: map[popKey]*orderInfo{},
		changed: make(chan struct{})}
}

// pops is the broker group's pop state: a slave serves its master's.
func (b *Broker) pops() *popState { return b.store.pop }

// group is the broker that owns the group's store, and so the timers of its pop state: a slave's master, so that
// closing a slave does not cancel the revives of pops it served.
func (b *Broker) group() *Broker {
	if b.opts.Master != nil {
		return b.opts.Master
	}
	return b
}

// popHeader is PopMessageRequestHeader.
type popHeader struct {
	group, topic string
	queueID      int32
	maxMsgs      int32
	invisible    int64
	pollTime     int64
	bornTime     int64
	initMode     int32
	expType, exp string
	order        bool
	attemptID    string
}

func readPopHeader(req *remoting.Command) (popHeader, error) {
	f := &headerFields{ext: req.ExtFields}
	h := popHeader{
		group:     f.str("consumerGroup", true),
		topic:     f.str("topic", true),
		queueID:   f.int32("queueId", true),
		maxMsgs:   f.int32("maxMsgNums", true),
		invisible: f.int64("invisibleTime", true),
		pollTime:  f.int64("pollTime", true),
		bornTime:  f.int64("bornTime", false), // processRequest fills it in when missing or 0
		initMode:  f.int32("initMode", true),
		expType:   f.str("expType", false),
		exp:       f.str("exp", false),
		order:     f.bool("order"),
		attemptID: f.str("attemptId", false),
	}
	if h.queueID < 0 {
		h.queueID = -1 // getQueueId
	}
	if h.bornTime == 0 {
		h.bornTime = time.Now().UnixMilli()
	}
	return h, f.err
}

// remoteString is a channel's remote address as Java prints it in remarks.
func remoteString(c *conn) string { return "/" + c.remote.String() }

// popResponse is a response with PopMessageResponseHeader: Java encodes the header's primitive fields even
// when the processor set none of them.
func popResponse(code int32, remark string) *remoting.Command {
	r := response(code, remark)
	r.ExtFields = map[string]string{"popTime": "0", "invisibleTime": "0", "reviveQid": "0", "restNum": "0"}
	return r
}

// pop answers POP_MESSAGE as PopMessageProcessor.processRequest does; nil means the request is held (long
// polling) and answered later.
func (b *Broker) pop(c *conn, req *remoting.Command) *remoting.Command {
	h, err := readPopHeader(req)
	if err != nil {
		return response(remoting.SystemError, err.Error())
	}
	ip := b.hostPort().Addr().String()
	if time.Now().UnixMilli()-h.bornTime-h.pollTime > popTimeoutTooMuch {
		return popResponse(remoting.PollingTimeout, fmt.Sprintf("the broker[%s] pop message is timeout too much", ip))
	}
	if h.maxMsgs > popMaxMsgNums {
		return popResponse(remoting.InvalidParameter, fmt.Sprintf("the broker[%s] pop message's num is greater than 32", ip))
	}
	cfg, ok := b.store.topic(h.topic)
	switch {
	case !ok:
		return popResponse(remoting.TopicNotExist, fmt.Sprintf("topic[%s] not exist, apply first please! %s", h.topic, faqNoTopic))
	case cfg.Perm&remoting.PermRead == 0:
		return popResponse(remoting.NoPermission, "the topic["+h.topic+"] peeking message is forbidden")
	case h.queueID >= cfg.ReadQueueNums:
		return popResponse(remoting.InvalidParameter, fmt.Sprintf("queueId[%d] is illegal, topic:[%s] topicConfig.readQueueNums:[%d] consumer:[%s]",
			h.queueID, h.topic, cfg.ReadQueueNums, remoteString(c)))
	}
	if h.expType != "" && h.expType != "TAG" {
		// Java compiles SQL92 here; the simulation filters by tag only.
		return popResponse(remoting.SubscriptionParseFailed, "parse the consumer's subscription failed")
	}
	resp, waits, changed := b.popOnce(h, cfg)
	if resp != nil {
		return resp
	}
	if h.pollTime <= 0 || b.popExpired(h) {
		return b.popNotFound(h)
	}
	b.popHold(c, req, h, waits, changed)
	return nil
}

func (b *Broker) popExpired(h popHeader) bool {
	return time.Now().UnixMilli() > h.bornTime+h.pollTime-popTimeoutMargin
}

// popNotFound is the answer to a pop that found nothing and polls no longer: POLLING_TIMEOUT, as processRequest
// answers when PopLongPollingService.polling does not hold the request (a poll time of 0, or one that is over).
func (b *Broker) popNotFound(h popHeader) *remoting.Command {
	r := popResponse(remoting.PollingTimeout, "NO_MESSAGE_IN_QUEUE")
	r.ExtFields["popTime"] = strconv.FormatInt(time.Now().UnixMilli(), 10)
	r.ExtFields["invisibleTime"] = strconv.FormatInt(h.invisible, 10)
	if h.order {
		r.ExtFields["reviveQid"] = strconv.Itoa(popOrderReviveQueue)
		r.ExtFields["orderCountInfo"] = ""
	}
	r.ExtFields["startOffsetInfo"], r.ExtFields["msgOffsetInfo"] = "", ""
	return r
}

// popHold holds a pop until a message may be there for it (a queue it read grows, a message is revived, an
// orderly queue is acked or unblocked) or its poll time is over, as PopLongPollingService does, and answers it.
func (b *Broker) popHold(c *conn, req *remoting.Command, h popHeader, waits []<-chan struct{}, changed <-chan struct{}) {
	b.mu.Lock()
	stop := b.stop
	b.wg.Add(1)
	b.mu.Unlock()
	go func() {
		defer b.wg.Done()
		for {
			t := time.NewTimer(time.Until(time.UnixMilli(h.bornTime + h.pollTime - popTimeoutMargin)))
			cases := make([]reflect.SelectCase, 0, len(waits)+4)
			recv := func(ch any) {
				cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ch)})
			}
			for _, ch := range waits {
				recv(ch)
			}
			recv(changed)
			recv(t.C)
			recv(c.done)
			recv(stop)
			chosen, _, _ := reflect.Select(cases)
			t.Stop()
			if chosen >= len(cases)-2 {
				return // the connection or the broker is gone
			}
			timedOut := chosen == len(cases)-3 // popExpired could still say no within the deadline's millisecond
			cfg, ok := b.store.topic(h.topic)
			var resp *remoting.Command
			if !ok {
				resp = popResponse(remoting.TopicNotExist, fmt.Sprintf("topic[%s] not exist, apply first please! %s", h.topic, faqNoTopic))
			} else {
				resp, waits, changed = b.popOnce(h, cfg)
				if resp == nil && (timedOut || b.popExpired(h)) {
					resp = b.popNotFound(h)
				}
			}
			if resp != nil {
				b.reply(c, req, resp)
				return
			}
		}
	}()
}

// popRun collects what one pop takes from the queues it reads.
type popRun struct {
	h          popHeader
	popTime    int64
	reviveQid  int32
	filter     func(*stored) bool
	body       []byte
	n          int32
	restNum    int64
	start      []message.StartOffset
	msgOffsets []message.MsgOffsets
	orderCount []message.OrderCount
	waits      []<-chan struct{}
}

// popOnce pops what there is, as processRequest with popMsgFromTopic and popMsgFromQueue does: the retry topic
// first one time in five (popFromRetryProbability), then the topic's queues from a random one (or the one asked
// for), then the retry topic if the pop is not full. Orderly pops never read the retry topic. It returns nil
// when nothing was found, with the channels that tell a held pop to try again.
func (b *Broker) popOnce(h popHeader, cfg remoting.TopicConfig) (*remoting.Command, []<-chan struct{}, <-chan struct{}) {
	p := b.pops()
	p.mu.Lock()
	defer p.mu.Unlock()
	changed := p.changed
	run := &popRun{h: h, popTime: time.Now().UnixMilli(), filter: matchTags(h.exp)}
	if h.order {
		run.reviveQid = popOrderReviveQueue
	} else {
		run.reviveQid = int32(p.seq % popReviveQueueNum)
		p.seq++
	}
	randomQ := rand.IntN(100)
	needRetry := randomQ < popFromRetryProbability
	retry := popRetryTopic(h.topic, h.group)
	if needRetry && !h.order {
		b.popTopic(p, run, retry, randomQ)
	}
	if h.queueID < 0 {
		b.popTopic(p, run, h.topic, randomQ)
	} else {
		b.popQueue(p, run, h.topic, h.queueID, false)
	}
	if !needRetry && run.n < h.maxMsgs && !h.order {
		b.popTopic(p, run, retry, randomQ)
	}
	if run.n == 0 {
		return nil, run.waits, changed
	}
	r := response(remoting.Success, "FOUND")
	r.Body = run.body
	r.ExtFields = map[string]string{ // PopMessageResponseHeader
		"popTime":         strconv.FormatInt(run.popTime, 10),
		"invisibleTime":   strconv.FormatInt(h.invisible, 10),
		"reviveQid":       strconv.Itoa(int(run.reviveQid)),
		"restNum":         strconv.FormatInt(run.restNum, 10),
		"startOffsetInfo": message.BuildStartOffsetInfo(run.start),
		"msgOffsetInfo":   message.BuildMsgOffsetInfo(run.msgOffsets),
	}
	if h.order {
		r.ExtFields["orderCountInfo"] = message.BuildOrderCountInfo(run.orderCount)
	}
	return r, nil, nil
}

// popTopic pops from every readable queue of a topic, starting at a random one (popMsgFromTopic).
func (b *Broker) popTopic(p *popState, run *popRun, topic string, randomQ int) {
	cfg, ok := b.store.topic(topic)
	if !ok {
		return
	}
	n := int(cfg.ReadQueueNums)
	for i := range n {
		b.popQueue(p, run, topic, int32((randomQ+i)%n), strings.HasPrefix(topic, RetryTopicPrefix))
	}
}

// popQueue pops from one queue (popMsgFromQueue): from the group's pop offset, skipping an orderly queue that is
// blocked, and records a checkpoint (or, orderly, the queue's order info) for what it took.
func (b *Broker) popQueue(p *popState, run *popRun, topic string, queue int32, isRetry bool) {
	h := run.h
	k := popKey{topic, h.group, queue}
	offset := b.popOffset(p, k, h.initMode)
	if h.order && p.blocked(k, h.attemptID, h.invisible) {
		return
	}
	if run.n >= h.maxMsgs {
		_, hi, _ := b.store.minMax(topic, queue)
		run.restNum += hi - offset
		return
	}
	r := b.store.get(topic, queue, offset, int(h.maxMsgs-run.n), run.filter)
	if r.status == statusOffsetTooSmall || r.status == statusOffsetOverflowBadly {
		// "Pop initial offset, because store is no correct": commit where the store says, and read from there.
		b.store.commitOffset(offsetKey{h.group, topic, queue}, r.next)
		offset = r.next
		r = b.store.get(topic, queue, offset, int(h.maxMsgs-run.n), run.filter)
	}
	if r.arrived != nil {
		run.waits = append(run.waits, r.arrived)
	}
	mark := message.TopicTypeOf(topic)
	switch r.status {
	case statusFound:
		offsets := make([]int64, len(r.msgs))
		for i, m := range r.msgs {
			offsets[i] = m.ext.QueueOffset
		}
		if h.order {
			run.orderCount = p.updateOrder(run.orderCount, k, h.attemptID, run.popTime, h.invisible, offsets)
			b.store.commitOffset(offsetKey{h.group, topic, queue}, offset)
			b.group().schedule(time.Duration(h.invisible)*time.Millisecond, func() { b.popNotify(p) }) // lock free
		} else {
			ck := &checkpoint{key: ckKey{k, offset, run.popTime}, invisible: h.invisible, reviveQid: run.reviveQid,
				offsets: offsets, next: r.next, ordered: true}
			b.addCheckpoint(p, ck)
		}
		run.start = append(run.start, message.StartOffset{TopicType: mark, QueueID: queue, Offset: offset})
		run.msgOffsets = append(run.msgOffsets, message.MsgOffsets{TopicType: mark, QueueID: queue, Offsets: offsets})
	case statusNoMatchedMessage:
		// Every message read was filtered out: move past them (addCkMock, or the orderly commit).
		if h.order {
			b.store.commitOffset(offsetKey{h.group, topic, queue}, r.next)
		} else {
			p.queues[k] = append(p.queues[k], &checkpoint{key: ckKey{k, offset, run.popTime}, next: r.next, ordered: true})
			p.commitOffsets(b.store, k)
		}
	}
	run.restNum += r.max - r.next
	for _, m := range r.msgs {
		run.n++
		if !isRetry {
			run.body = append(run.body, m.raw...)
			continue
		}
		// A retry message is returned as a message of the topic asked for, with its receipt handle set by the
		// broker (popResponseReturnActualRetryTopic false): the client cannot tell its queue from the topic's.
		ext := *m.ext
		ext.Properties = cloneProps(m.ext.Properties)
		if _, ok := ext.Properties[message.PropertyPopCK]; !ok {
			ext.Properties[message.PropertyPopCK] = message.ExtraInfo{CkQueueOffset: offset, PopTime: run.popTime,
				InvisibleTime: h.invisible, ReviveQid: run.reviveQid, TopicType: mark, BrokerName: b.opts.Name,
				QueueID: ext.QueueID, QueueOffset: ext.QueueOffset, HasQueueOffset: true}.String()
		}
		ext.Topic = h.topic
		raw, err := message.AppendExt(run.body, &ext)
		if err != nil {
			b.log.Warn("retry message not recoded", "topic", topic, "offset", ext.QueueOffset, "err", err)
			run.n--
			continue
		}
		run.body = raw
	}
}

// popOffset is where a group's pop of a queue reads next (getPopOffset): its consume offset, initialised as
// getInitOffset does and committed when there is none, or past its last checkpoint.
func (b *Broker) popOffset(p *popState, k popKey, initMode int32) int64 {
	ok := offsetKey{k.group, k.topic, k.queue}
	offset, found := b.store.consumerOffset(ok)
	if !found {
		lo, hi, _ := b.store.minMax(k.topic, k.queue)
		switch {
		case initMode == consumeInitModeMin || strings.HasPrefix(k.topic, RetryTopicPrefix):
			offset = lo
		case lo <= 0 && hi > 0:
			offset = 0 // initPopOffsetByCheckMsgInMem: the queue's first message is still in memory
		default:
			offset = max(hi-1, 0) // pop the last one
		}
		b.store.commitOffset(ok, offset)
	}
	if cks := p.queues[k]; len(cks) > 0 {
		offset = max(offset, cks[len(cks)-1].next)
	}
	return offset
}

// addCheckpoint records a checkpoint and schedules its revive at popTime+invisibleTime.
func (b *Broker) addCheckpoint(p *popState, ck *checkpoint) {
	p.cks[ck.key] = ck
	if ck.ordered {
		p.queues[ck.key.popKey] = append(p.queues[ck.key.popKey], ck)
	}
	d := time.Until(time.UnixMilli(ck.key.popTime + ck.invisible))
	b.group().schedule(max(d, 0), func() { b.revive(p, ck) })
}

// commitOffsets commits a queue's consume offset past the checkpoints at its head that are done, in order.
func (p *popState) commitOffsets(s *store, k popKey) {
	cks := p.queues[k]
	ok := offsetKey{k.group, k.topic, k.queue}
	for len(cks) > 0 && cks[0].done() {
		if cur, found := s.consumerOffset(ok); !found || cks[0].next > cur {
			s.commitOffset(ok, cks[0].next)
		}
		cks[0] = nil
		cks = cks[1:]
	}
	if len(cks) == 0 {
		delete(p.queues, k)
	} else {
		p.queues[k] = cks
	}
}

// ackOffset marks one message of a checkpoint acked; an ack no checkpoint knows is dropped, as the revive
// service drops it.
func (p *popState) ackOffset(s *store, key ckKey, offset int64) {
	ck := p.cks[key]
	if ck == nil {
		return
	}
	i := slices.Index(ck.offsets, offset)
	if i < 0 {
		return // "invalid ack index"
	}
	ck.acked |= 1 << i
	if ck.done() {
		delete(p.cks, key)
		if ck.ordered {
			p.commitOffsets(s, key.popKey)
		}
	}
}

// revive puts the unacked messages of a checkpoint whose invisible time is over into the pop retry topic
// (PopReviveService.reviveRetry): the same body, properties and tags, reconsumeTimes+1, 1ST_POP_TIME set on the
// first revive, the broker as the born host.
func (b *Broker) revive(p *popState, ck *checkpoint) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ck.done() {
		return
	}
	k := ck.key.popKey
	retry := k.topic
	if !strings.HasPrefix(retry, RetryTopicPrefix) {
		retry = popRetryTopic(k.topic, k.group)
	}
	for i, off := range ck.offsets {
		if ck.acked&(1<<i) != 0 {
			continue
		}
		r := b.store.get(k.topic, k.queue, off, 1, nil)
		if r.status != statusFound || r.msgs[0].ext.QueueOffset != off {
			continue // gone from the store
		}
		orig := r.msgs[0].ext
		if _, ok := b.store.topic(retry); !ok { // addRetryTopicIfNotExist, then initPopRetryOffset
			b.store.setTopicIfAbsent(remoting.TopicConfig{TopicName: retry, ReadQueueNums: 1, WriteQueueNums: 1,
				Perm: remoting.PermRead | remoting.PermWrite, TopicFilterType: remoting.TopicFilterSingleTag})
			if _, found := b.store.consumerOffset(offsetKey{k.group, retry, 0}); !found {
				b.store.commitOffset(offsetKey{k.group, retry, 0}, 0)
			}
		}
		props := cloneProps(orig.Properties)
		if orig.ReconsumeTimes == 0 || props[message.PropertyFirstPopTime] == "" {
			props[message.PropertyFirstPopTime] = strconv.FormatInt(ck.key.popTime, 10)
		}
		m := &message.Ext{Message: message.Message{Topic: retry, Flag: orig.Flag, Body: orig.Body, Properties: props},
			SysFlag: orig.SysFlag &^ (message.BornHostV6Flag | message.StoreHostV6Flag), BornTimestamp: orig.BornTimestamp,
			BornHost: b.hostPort(), ReconsumeTimes: orig.ReconsumeTimes + 1, BodyCRC: message.BodyCRC(orig.Body)}
		if _, err := b.store.put(m, b.hostPort()); err != nil {
			b.log.Warn("pop revive failed", "topic", retry, "err", err)
		}
	}
	ck.revived = true
	delete(p.cks, ck.key)
	if ck.ordered {
		p.commitOffsets(b.store, k)
	}
	p.notify()
}

func (b *Broker) popNotify(p *popState) {
	p.mu.Lock()
	p.notify()
	p.mu.Unlock()
}

// blocked is ConsumerOrderInfoManager.checkBlock: an unacked message of the last orderly pop is still invisible
// (a retry of the same attempt is not blocked).
func (p *popState) blocked(k popKey, attemptID string, invisible int64) bool {
	o := p.order[k]
	if o == nil || len(o.offsets) == 0 || (o.attemptID != "" && o.attemptID == attemptID) {
		return false
	}
	if o.invisible <= 0 {
		o.invisible = invisible
	}
	now := time.Now().UnixMilli()
	for i, off := range o.offsets {
		if o.commitBits&(1<<i) != 0 {
			continue
		}
		next := o.popTime + o.invisible
		if t, ok := o.nextVisible[off]; ok {
			next = t
		}
		if now < next {
			return true
		}
	}
	return false
}

// updateOrder is ConsumerOrderInfoManager.update: the queue's new order info, with the consume count of each
// message popped again, and its orderCountInfo entries (per message, then the least for old clients).
func (p *popState) updateOrder(dst []message.OrderCount, k popKey, attemptID string, popTime, invisible int64, offsets []int64) []message.OrderCount {
	o := &orderInfo{attemptID: attemptID, popTime: popTime, invisible: invisible, offsets: offsets}
	if prev := p.order[k]; prev != nil {
		if prev.attemptID != "" && prev.attemptID == attemptID {
			o.consumed = prev.consumed
		} else {
			o.consumed = map[int64]int32{}
			for _, off := range offsets {
				if slices.Contains(prev.offsets, off) {
					o.consumed[off] = prev.consumed[off] + 1
				}
			}
		}
	}
	p.order[k] = o
	mark := message.TopicTypeOf(k.topic)
	least := int32(0)
	if o.consumed != nil {
		least = int32(1<<31 - 1)
		keys := make([]int64, 0, len(o.consumed))
		for off := range o.consumed {
			keys = append(keys, off)
		}
		slices.Sort(keys)
		for _, off := range keys {
			n := o.consumed[off]
			dst = append(dst, message.OrderCount{TopicType: mark, QueueID: k.queue, PerMessage: true, QueueOffset: off, Count: n})
			least = min(least, n)
		}
		if len(o.consumed) != len(o.offsets) {
			least = 0
		}
	}
	return append(dst, message.OrderCount{TopicType: mark, QueueID: k.queue, Count: least})
}

// commitAndNext is ConsumerOrderInfoManager.commitAndNext: -1 for an offset the last pop did not take, -2 for
// an ack of an older pop, else the consume offset after the ack.
func (p *popState) commitAndNext(k popKey, offset, popTime int64) int64 {
	o := p.order[k]
	if o == nil {
		return offset + 1
	}
	if len(o.offsets) == 0 {
		return -1
	}
	if popTime != o.popTime {
		return -2
	}
	i := slices.Index(o.offsets, offset)
	if i < 0 {
		return -1
	}
	o.commitBits |= 1 << i
	for j, off := range o.offsets {
		if o.commitBits&(1<<j) == 0 {
			return off
		}
	}
	return o.offsets[len(o.offsets)-1] + 1
}

// ackOrderly is AckMessageProcessor.ackOrderly.
func (b *Broker) ackOrderly(p *popState, c *conn, k popKey, offset, popTime, invisible int64, resp *remoting.Command) {
	ok := offsetKey{k.group, k.topic, k.queue}
	old, _ := b.store.consumerOffset(ok)
	if offset < old {
		return
	}
	next := p.commitAndNext(k, offset, popTime)
	switch {
	case next > -1:
		b.store.commitOffset(ok, next)
		if !p.blocked(k, "", invisible) {
			p.notify()
		}
	case next == -1:
		resp.Code = remoting.MessageIllegal
		resp.Remark = fmt.Sprintf("offset is illegal, key:%s, old:%d, commit:%d, next:%d, %s", k, old, offset, next, remoteString(c))
	}
}

// ackHeader is AckMessageRequestHeader and, with invisibleTime, ChangeInvisibleTimeRequestHeader.
type ackHeader struct {
	group, topic string
	queueID      int32
	extraInfo    string
	offset       int64
	invisible    int64
}

func readAckHeader(req *remoting.Command, change bool) (ackHeader, error) {
	f := &headerFields{ext: req.ExtFields}
	h := ackHeader{
		group:     f.str("consumerGroup", true),
		topic:     f.str("topic", true),
		queueID:   f.int32("queueId", true),
		extraInfo: f.str("extraInfo", true),
		offset:    f.int64("offset", true),
	}
	if change {
		h.invisible = f.int64("invisibleTime", true)
	}
	return h, f.err
}

// ack answers ACK_MESSAGE and BATCH_ACK_MESSAGE as AckMessageProcessor does. An ack of a handle the broker
// does not know (acked before, revived, of an older pop) succeeds: Java appends it to the revive log, where
// nothing matches it.
func (b *Broker) ack(c *conn, req *remoting.Command) *remoting.Command {
	if req.Code == remoting.BatchAckMessage {
		return b.batchAck(c, req)
	}
	h, err := readAckHeader(req, false)
	if err != nil {
		return response(remoting.SystemError, err.Error())
	}
	cfg, ok := b.store.topic(h.topic)
	if !ok {
		return response(remoting.TopicNotExist, fmt.Sprintf("topic[%s] not exist, apply first please! %s", h.topic, faqNoTopic))
	}
	if h.queueID >= cfg.ReadQueueNums || h.queueID < 0 {
		return response(remoting.MessageIllegal, fmt.Sprintf("queueId[%d] is illegal, topic:[%s] topicConfig.readQueueNums:[%d] consumer:[%s]",
			h.queueID, h.topic, cfg.ReadQueueNums, remoteString(c)))
	}
	lo, hi, _ := b.store.minMax(h.topic, h.queueID)
	if h.offset < lo || h.offset > hi {
		return response(responseNoMessage, fmt.Sprintf("offset is illegal, key:%s@%d, commit:%d, store:%d~%d", h.topic, h.queueID, h.offset, lo, hi))
	}
	info, err := message.ParseExtraInfo(h.extraInfo)
	if err != nil {
		return response(remoting.SystemError, "extraInfo: "+err.Error())
	}
	resp := success(nil, nil)
	p := b.pops()
	p.mu.Lock()
	defer p.mu.Unlock()
	k := popKey{h.topic, h.group, h.queueID}
	if info.ReviveQid == popOrderReviveQueue {
		b.ackOrderly(p, c, k, h.offset, info.PopTime, info.InvisibleTime, resp)
	} else {
		p.ackOffset(b.store, ckKey{k, info.CkQueueOffset, info.PopTime}, h.offset)
	}
	return resp
}

// batchAck answers BATCH_ACK_MESSAGE: each BatchAck names a checkpoint (its topic by the retry mark, its queue,
// start offset and pop time) and the acked offsets as a bit set from the start offset.
func (b *Broker) batchAck(c *conn, req *remoting.Command) *remoting.Command {
	var body batchAckBody
	if req.Body != nil {
		var err error
		if body, err = decodeBatchAck(req.Body); err != nil {
			return response(remoting.SystemError, err.Error())
		}
	}
	if len(body.Acks) == 0 {
		return response(responseNoMessage, "")
	}
	resp := success(nil, nil)
	p := b.pops()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, a := range body.Acks {
		var topic string
		switch a.Retry {
		case "0", "1", "2":
			topic = message.TopicType(a.Retry[0]-'0').RealTopic(a.Topic, a.ConsumerGroup)
		default: // ExtraInfoUtil.getRealTopic throws
			return response(remoting.SystemError, "java.lang.IllegalArgumentException: getRetry fail, format is wrong")
		}
		lo, hi, ok := b.store.minMax(topic, a.QueueID)
		if !ok {
			continue // "Illegal topic or queue found when batch ack"
		}
		k := popKey{topic, a.ConsumerGroup, a.QueueID}
		for i, set := range a.bits() {
			if !set {
				continue
			}
			offset := a.StartOffset + int64(i)
			if offset < lo || offset > hi {
				continue
			}
			if a.ReviveQueueID == popOrderReviveQueue {
				b.ackOrderly(p, c, k, offset, a.PopTime, a.InvisibleTime, resp)
			} else {
				p.ackOffset(b.store, ckKey{k, a.StartOffset, a.PopTime}, offset)
			}
		}
	}
	return resp
}

// changeInvisible answers CHANGE_MESSAGE_INVISIBLETIME as ChangeInvisibleTimeProcessor does: a new checkpoint
// for the one message, popped now with the new invisible time, and an ack of the old handle. The client builds
// the new handle from the answer's popTime, invisibleTime and reviveQid and the request's offset.
func (b *Broker) changeInvisible(c *conn, req *remoting.Command) *remoting.Command {
	h, err := readAckHeader(req, true)
	if err != nil {
		return response(remoting.SystemError, err.Error())
	}
	// The answer carries ChangeInvisibleTimeResponseHeader whatever its code, zeros unless set.
	answer := func(code int32, remark string, popTime, invisible int64, reviveQid int32) *remoting.Command {
		r := response(code, remark)
		r.ExtFields = map[string]string{"popTime": strconv.FormatInt(popTime, 10),
			"invisibleTime": strconv.FormatInt(invisible, 10), "reviveQid": strconv.Itoa(int(reviveQid))}
		return r
	}
	cfg, ok := b.store.topic(h.topic)
	if !ok {
		return answer(remoting.TopicNotExist, fmt.Sprintf("topic[%s] not exist, apply first please! %s", h.topic, faqNoTopic), 0, 0, 0)
	}
	if h.queueID >= cfg.ReadQueueNums || h.queueID < 0 {
		return answer(remoting.MessageIllegal, fmt.Sprintf("queueId[%d] is illegal, topic:[%s] topicConfig.readQueueNums:[%d] consumer:[%s]",
			h.queueID, h.topic, cfg.ReadQueueNums, remoteString(c)), 0, 0, 0)
	}
	lo, hi, _ := b.store.minMax(h.topic, h.queueID)
	if h.offset < lo || h.offset >= hi {
		return answer(responseNoMessage, notSetRemark, 0, 0, 0)
	}
	info, err := message.ParseExtraInfo(h.extraInfo)
	if err != nil {
		return answer(remoting.SystemError, "extraInfo: "+err.Error(), 0, 0, 0)
	}
	p := b.pops()
	p.mu.Lock()
	defer p.mu.Unlock()
	k := popKey{h.topic, h.group, h.queueID}
	if info.ReviveQid == popOrderReviveQueue { // processChangeInvisibleTimeForOrder
		if old, _ := b.store.consumerOffset(offsetKey{h.group, h.topic, h.queueID}); h.offset < old {
			return answer(remoting.Success, notSetRemark, 0, 0, 0)
		}
		next := time.Now().UnixMilli() + h.invisible
		if o := p.order[k]; o != nil && o.popTime == info.PopTime {
			if o.nextVisible == nil {
				o.nextVisible = map[int64]int64{}
			}
			o.nextVisible[h.offset] = next
			b.group().schedule(time.Duration(h.invisible)*time.Millisecond, func() { b.popNotify(p) })
		}
		return answer(remoting.Success, notSetRemark, info.PopTime, next-info.PopTime, info.ReviveQid)
	}
	now := time.Now().UnixMilli()
	p.ackOffset(b.store, ckKey{k, info.CkQueueOffset, info.PopTime}, h.offset)
	// Fix: the new checkpoint is keyed by (queue, offset, now). A change in the millisecond of the pop, for the
	// message at the pop's start offset, made that the key of the pop's own checkpoint, which the new one then
	// replaced in p.cks: the other messages' acks and changes found the wrong checkpoint, were dropped, and those
	// messages came again at the old invisible time. Java keeps both in its revive log; here the new checkpoint
	// takes the next free millisecond, which the answer's popTime (so the new handle) carries.
	for p.cks[ckKey{k, h.offset, now}] != nil {
		now++
	}
	b.addCheckpoint(p, &checkpoint{key: ckKey{k, h.offset, now}, invisible: h.invisible, reviveQid: info.ReviveQid,
		offsets: []int64{h.offset}, next: h.offset + 1})
	return answer(remoting.Success, notSetRemark, now, h.invisible, info.ReviveQid)
}

// batchAckBody is BatchAckMessageRequestBody.
type batchAckBody struct {
	BrokerName string
	Acks       []batchAck
}

// batchAck is BatchAck. BitSet holds java.util.BitSet.toByteArray: bit i is bit i%8 of byte i/8.
type batchAck struct {
	ConsumerGroup, Topic, Retry string
	StartOffset                 int64
	QueueID, ReviveQueueID      int32
	PopTime, InvisibleTime      int64
	BitSet                      []byte
}

// bits are the bit set's bits, in order.
func (a batchAck) bits() func(func(int, bool) bool) {
	return func(yield func(int, bool) bool) {
		for i := range len(a.BitSet) * 8 {
			if !yield(i, a.BitSet[i/8]&(1<<(i%8)) != 0) {
				return
			}
		}
	}
}

// batchAckJSON reads a BatchAck in either of the names fastjson accepts: the short ones BatchAck's @JSONField
// writes ("c", "t", "r", "so", "q", "rq", "pt", "it", "b") or the alternate long ones.
type batchAckJSON struct {
	C             *string    `json:"c"`
	ConsumerGroup *string    `json:"consumerGroup"`
	T             *string    `json:"t"`
	Topic         *string    `json:"topic"`
	R             *string    `json:"r"`
	Retry         *string    `json:"retry"`
	SO            *jsonLong  `json:"so"`
	StartOffset   *jsonLong  `json:"startOffset"`
	Q             *jsonLong  `json:"q"`
	QueueID       *jsonLong  `json:"queueId"`
	RQ            *jsonLong  `json:"rq"`
	ReviveQueueID *jsonLong  `json:"reviveQueueId"`
	PT            *jsonLong  `json:"pt"`
	PopTime       *jsonLong  `json:"popTime"`
	IT            *jsonLong  `json:"it"`
	InvisibleTime *jsonLong  `json:"invisibleTime"`
	B             *jsonBytes `json:"b"`
	BitSet        *jsonBytes `json:"bitSet"`
}

// jsonLong is a Java long or int as fastjson reads it: a number, or a string holding one.
type jsonLong int64

func (l *jsonLong) UnmarshalJSON(b []byte) error {
	s := string(b)
	if s == "null" {
		return nil
	}
	if len(s) >= 2 && s[0] == '"' {
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return fmt.Errorf("not a long: %s", b)
	}
	*l = jsonLong(n)
	return nil
}

// jsonBytes is a byte[] as fastjson reads it: base64 in a string (what writeByteArray writes), or an array of
// numbers.
type jsonBytes []byte

func (j *jsonBytes) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	if len(b) > 0 && b[0] == '[' {
		var ns []int
		if err := json.Unmarshal(b, &ns); err != nil {
			return err
		}
		out := make([]byte, len(ns))
		for i, n := range ns {
			if n < -128 || n > 255 {
				return fmt.Errorf("byte out of range: %d", n)
			}
			out[i] = byte(n)
		}
		*j = out
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	out, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		if out, err = base64.RawStdEncoding.DecodeString(s); err != nil {
			return fmt.Errorf("bit set is not base64: %w", err)
		}
	}
	*j = out
	return nil
}

// decodeBatchAck reads a BatchAckMessageRequestBody as fastjson does (BatchAckMessageRequestBody.decode). Where a
// short and a long name are both present the short one wins. Java leaves a missing field null or 0; here too,
// except that a null retry mark is refused later, where Java throws.
func decodeBatchAck(data []byte) (batchAckBody, error) {
	var raw struct {
		BrokerName *string         `json:"brokerName"`
		Acks       []*batchAckJSON `json:"acks"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&raw); err != nil {
		return batchAckBody{}, fmt.Errorf("batch ack body: %w", err)
	}
	if dec.More() {
		return batchAckBody{}, errors.New("batch ack body: data after the object")
	}
	var body batchAckBody
	if raw.BrokerName != nil {
		body.BrokerName = *raw.BrokerName
	}
	for _, a := range raw.Acks {
		if a == nil {
			return batchAckBody{}, errors.New("batch ack body: null ack")
		}
		str := func(short, long *string) string {
			if short != nil {
				return *short
			}
			if long != nil {
				return *long
			}
			return ""
		}
		num := func(short, long *jsonLong) int64 {
			if short != nil {
				return int64(*short)
			}
			if long != nil {
				return int64(*long)
			}
			return 0
		}
		ack := batchAck{ConsumerGroup: str(a.C, a.ConsumerGroup), Topic: str(a.T, a.Topic), Retry: str(a.R, a.Retry),
			StartOffset: num(a.SO, a.StartOffset), QueueID: int32(num(a.Q, a.QueueID)),
			ReviveQueueID: int32(num(a.RQ, a.ReviveQueueID)), PopTime: num(a.PT, a.PopTime),
			InvisibleTime: num(a.IT, a.InvisibleTime)}
		if a.B != nil {
			ack.BitSet = *a.B
		} else if a.BitSet != nil {
			ack.BitSet = *a.BitSet
		}
		body.Acks = append(body.Acks, ack)
	}
	return body, nil
}
