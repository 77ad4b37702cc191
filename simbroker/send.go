package simbroker

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/rocketpilot/rocketpilot/remoting"
	"github.com/rocketpilot/rocketpilot/remoting/message"
)

// Message properties the broker reads or sets (MessageConst.java).
const (
	propTags            = "TAGS"
	propDelay           = "DELAY"
	propRetryTopic      = "RETRY_TOPIC"
	propRealTopic       = "REAL_TOPIC"
	propRealQueueID     = "REAL_QID"
	propOriginMessageID = "ORIGIN_MESSAGE_ID"
	propUniqKey         = "UNIQ_KEY"
	propCluster         = "CLUSTER"
	propMaxOffset       = "MAX_OFFSET"
	propMinOffset       = "MIN_OFFSET"
)

// Topic prefixes and the delay topic (MixAll.java, TopicValidator.java).
const (
	RetryTopicPrefix = "%RETRY%"
	DLQTopicPrefix   = "%DLQ%"
	scheduleTopic    = "SCHEDULE_TOPIC_XXXX"
)

// sendHeader is SendMessageRequestHeader, read from either its long field names (10) or the one-letter names of
// SendMessageRequestHeaderV2 (310, 320).
type sendHeader struct {
	producerGroup     string
	topic             string
	queueID           int32
	sysFlag           int32
	bornTimestamp     int64
	flag              int32
	properties        string
	reconsumeTimes    int32
	maxReconsumeTimes int32
	batch             bool
}

// v2Names maps SendMessageRequestHeaderV2's fields to SendMessageRequestHeader's (createSendMessageRequestHeaderV1).
var v2Names = map[string]string{"a": "producerGroup", "b": "topic", "c": "defaultTopic", "d": "defaultTopicQueueNums",
	"e": "queueId", "f": "sysFlag", "g": "bornTimestamp", "h": "flag", "i": "properties", "j": "reconsumeTimes",
	"k": "unitMode", "l": "maxReconsumeTimes", "m": "batch", "n": "brokerName"}

// headerFields reads a request's header fields by name; ints reports the first that is missing or not a number.
type headerFields struct {
	ext map[string]string
	err error
}

func (h *headerFields) str(name string, required bool) string {
	v, ok := h.ext[name]
	if !ok && required && h.err == nil {
		h.err = fmt.Errorf("the custom field <%s> is null", name) // Java's checkFields remark
	}
	return v
}

func (h *headerFields) int64(name string, required bool) int64 {
	v := h.str(name, required)
	if v == "" {
		return 0
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil && h.err == nil {
		h.err = fmt.Errorf("the custom field <%s> is not a number: %q", name, v)
	}
	return n
}

func (h *headerFields) int32(name string, required bool) int32 { return int32(h.int64(name, required)) }

// optInt32 is an optional number field, def when the header does not carry it.
func (h *headerFields) optInt32(name string, def int32) int32 {
	if _, ok := h.ext[name]; !ok {
		return def
	}
	return h.int32(name, false)
}

// defaultMaxReconsumeTimes is SubscriptionGroupConfig.retryMaxTimes, used when a request names no maximum.
const defaultMaxReconsumeTimes = 16

func (h *headerFields) bool(name string) bool { return strings.EqualFold(h.ext[name], "true") }

func readSendHeader(req *remoting.Command) (sendHeader, error) {
	ext := req.ExtFields
	if _, v2 := ext["b"]; v2 {
		ext = make(map[string]string, len(req.ExtFields))
		for k, v := range req.ExtFields {
			if long, ok := v2Names[k]; ok {
				k = long
			}
			ext[k] = v
		}
	}
	f := &headerFields{ext: ext}
	h := sendHeader{
		producerGroup:     f.str("producerGroup", true),
		topic:             f.str("topic", true),
		queueID:           f.int32("queueId", true),
		sysFlag:           f.int32("sysFlag", true),
		bornTimestamp:     f.int64("bornTimestamp", true),
		flag:              f.int32("flag", true),
		properties:        f.str("properties", false),
		reconsumeTimes:    f.int32("reconsumeTimes", false),
		maxReconsumeTimes: f.optInt32("maxReconsumeTimes", defaultMaxReconsumeTimes),
		batch:             f.bool("batch"),
	}
	return h, f.err
}

// send stores a message or a batch, as SendMessageProcessor.sendMessage and sendBatchMessage do.
func (b *Broker) send(c *conn, req *remoting.Command) *remoting.Command {
	h, err := readSendHeader(req)
	if err != nil {
		return response(remoting.SystemError, err.Error())
	}
	// AbstractSendMessageProcessor.msgCheck
	if !b.writable.Load() {
		return response(remoting.NoPermission, "the broker["+b.hostPort().Addr().String()+"] sending message is forbidden")
	}
	cfg, ok := b.store.topic(h.topic)
	if !ok && strings.HasPrefix(h.topic, RetryTopicPrefix) {
		cfg, ok = b.retryTopic(strings.TrimPrefix(h.topic, RetryTopicPrefix)), true
	}
	if !ok {
		return response(remoting.TopicNotExist, "topic["+h.topic+"] not exist, apply first please! "+faqNoTopic)
	}
	if cfg.Perm&remoting.PermWrite == 0 {
		return response(remoting.NoPermission, fmt.Sprintf("the topic[%s] sending message is forbidden", h.topic))
	}
	if h.queueID >= queueCount(cfg) {
		return response(remoting.InvalidParameter, fmt.Sprintf("request queueId[%d] is illegal, %s Producer: %s",
			h.queueID, javaString(cfg), c.remote))
	}
	if h.queueID < 0 {
		h.queueID = rand.Int32N(max(cfg.WriteQueueNums, 1))
	}
	props, err := message.DecodeProperties(h.properties)
	if err != nil {
		return response(remoting.MessageIllegal, "the message properties are malformed: "+err.Error())
	}
	var msgs []message.Message
	if req.Code == remoting.SendBatchMessage {
		if msgs, err = message.DecodeBatch(req.Body); err != nil {
			return response(remoting.MessageIllegal, "the batch body is malformed: "+err.Error())
		}
		if len(msgs) == 0 {
			return response(remoting.MessageIllegal, "the batch is empty")
		}
	} else {
		msgs = []message.Message{{Topic: h.topic, Flag: h.flag, Body: req.Body, Properties: props}}
	}
	exts := make([]*message.Ext, len(msgs))
	for i, m := range msgs {
		if m.Properties == nil {
			m.Properties = map[string]string{}
		}
		m.Topic, m.Properties[propCluster] = h.topic, b.opts.Cluster
		exts[i] = &message.Ext{Message: m, QueueID: h.queueID, SysFlag: h.sysFlag, BornTimestamp: h.bornTimestamp,
			BornHost: c.remote, ReconsumeTimes: h.reconsumeTimes}
	}
	if req.Code == remoting.SendBatchMessage {
		// A batch is stored in one piece (no delay levels: the client refuses them in a batch).
		for _, ext := range exts {
			ext.BodyCRC = message.BodyCRC(ext.Body)
		}
		if err := b.store.putBatch(exts, b.hostPort()); err != nil {
			return response(remoting.SystemError, err.Error())
		}
	} else {
		ext := exts[0]
		if strings.HasPrefix(h.topic, RetryTopicPrefix) {
			b.toDLQIfSpent(ext, strings.TrimPrefix(h.topic, RetryTopicPrefix), h.maxReconsumeTimes)
		}
		stored, err := b.put(ext)
		if err != nil {
			return response(remoting.SystemError, err.Error())
		}
		exts[0] = stored
	}
	ids := make([]string, len(exts))
	for i, stored := range exts {
		ids[i] = message.OffsetMsgID(stored.StoreHost, stored.CommitLogOffset)
	}
	// SendMessageResponseHeader: the queue the request asked for (or the one picked for it), even when the message
	// went to the delay or dead-letter topic; the offset where it was stored (AppendMessageResult.logicsOffset).
	return success(map[string]string{
		"msgId":       strings.Join(ids, ","),
		"queueId":     strconv.Itoa(int(h.queueID)),
		"queueOffset": strconv.FormatInt(exts[0].QueueOffset, 10),
	}, nil)
}

// faqNoTopic is the FAQ link Java appends to "topic not exist" (FAQUrl.NO_TOPIC_ROUTE_INFO's page).
const faqNoTopic = "\nSee https://rocketmq.apache.org/docs/bestPractice/06FAQ for further details."

// javaString is TopicConfig.toString, which Java puts in some remarks.
func javaString(t remoting.TopicConfig) string {
	return fmt.Sprintf("TopicConfig [topicName=%s, readQueueNums=%d, writeQueueNums=%d, perm=%s, topicFilterType=%s, topicSysFlag=%d, order=%v, attributes={}]",
		t.TopicName, t.ReadQueueNums, t.WriteQueueNums, remoting.PermString(t.Perm), t.TopicFilterType, t.TopicSysFlag, t.Order)
}

// retryTopic creates a consumer group's retry topic if it does not exist (createTopicInSendMessageBackMethod: one
// queue, read and write).
func (b *Broker) retryTopic(group string) remoting.TopicConfig {
	return b.createTopic(RetryTopicPrefix + group)
}

// createTopic creates a one-queue read-write topic unless it exists, and registers a new one with the NameServers at
// once, as createTopicInSendMessageBackMethod does (registerBrokerData): clients look the retry topic up right after
// their first heartbeat.
func (b *Broker) createTopic(name string) remoting.TopicConfig {
	if cfg, ok := b.store.topic(name); ok {
		return cfg
	}
	cfg := remoting.TopicConfig{TopicName: name, ReadQueueNums: 1, WriteQueueNums: 1, Perm: remoting.PermRead | remoting.PermWrite}
	if b.store.setTopicIfAbsent(cfg) {
		b.RegisterNow()
	}
	cfg, _ = b.store.topic(name)
	return cfg
}

// toDLQIfSpent sends a message of a retry topic that used up its reconsume times to the group's dead-letter topic
// instead (handleRetryAndDLQ).
func (b *Broker) toDLQIfSpent(m *message.Ext, group string, maxReconsume int32) {
	if m.ReconsumeTimes > maxReconsume { // handleRetryAndDLQ: more than the maximum (send back uses >=)
		b.toDLQ(m, group)
	}
}

// toDLQ sends a message to the group's dead-letter topic, created with one queue when missing.
func (b *Broker) toDLQ(m *message.Ext, group string) {
	dlq := b.createTopic(DLQTopicPrefix + group)
	m.Topic, m.QueueID = dlq.TopicName, 0
}

// put stores a message; one with a delay level goes to the delay topic first and reaches its own topic when the
// level's delay has passed, as ScheduleMessageService delivers it.
func (b *Broker) put(m *message.Ext) (*message.Ext, error) {
	m.BodyCRC = message.BodyCRC(m.Body)
	level, _ := strconv.Atoi(m.Properties[propDelay])
	if level <= 0 || strings.HasPrefix(m.Topic, DLQTopicPrefix) {
		return b.store.put(m, b.hostPort())
	}
	level = min(level, len(b.opts.DelayLevels))
	real := *m
	real.Properties = cloneProps(m.Properties)
	delete(real.Properties, propDelay)
	m.Properties[propRealTopic], m.Properties[propRealQueueID] = m.Topic, strconv.Itoa(int(m.QueueID))
	b.store.setTopicIfAbsent(remoting.TopicConfig{TopicName: scheduleTopic, ReadQueueNums: int32(len(b.opts.DelayLevels)),
		WriteQueueNums: int32(len(b.opts.DelayLevels)), Perm: remoting.PermRead | remoting.PermWrite})
	m.Topic, m.QueueID = scheduleTopic, int32(level-1)
	stored, err := b.store.put(m, b.hostPort())
	if err != nil {
		return nil, err
	}
	b.schedule(b.opts.DelayLevels[level-1], func() {
		real.StoreTimestamp = time.Now().UnixMilli()
		if _, err := b.store.put(&real, b.hostPort()); err != nil {
			b.log.Warn("delayed message not delivered", "topic", real.Topic, "err", err)
		}
	})
	return stored, nil
}

func cloneProps(p map[string]string) map[string]string {
	out := make(map[string]string, len(p))
	for k, v := range p {
		out[k] = v
	}
	return out
}

// sendBack puts a message a consumer failed to consume into its group's retry topic, with a delay that grows with
// its reconsume times, or into the dead-letter topic once they are used up (consumerSendMsgBack).
func (b *Broker) sendBack(c *conn, req *remoting.Command) *remoting.Command {
	f := &headerFields{ext: req.ExtFields}
	offset := f.int64("offset", true)
	group := f.str("group", true)
	delayLevel := f.int32("delayLevel", true)
	originMsgID := f.str("originMsgId", false)
	maxReconsume := f.optInt32("maxReconsumeTimes", defaultMaxReconsumeTimes)
	if f.err != nil {
		return response(remoting.SystemError, f.err.Error())
	}
	if !b.writable.Load() {
		return response(remoting.NoPermission, "the broker["+b.hostPort().Addr().String()+"] sending message is forbidden")
	}
	orig, ok := b.store.byOffset(offset)
	if !ok {
		return response(remoting.SystemError, "look message by offset failed, "+strconv.FormatInt(offset, 10))
	}
	props := cloneProps(orig.Properties)
	if props[propRetryTopic] == "" {
		props[propRetryTopic] = orig.Topic
	}
	if props[propOriginMessageID] == "" {
		if originMsgID == "" {
			originMsgID = message.OffsetMsgID(orig.StoreHost, orig.CommitLogOffset)
		}
		props[propOriginMessageID] = originMsgID
	}
	cfg := b.retryTopic(group)
	m := &message.Ext{Message: message.Message{Topic: cfg.TopicName, Flag: orig.Flag, Body: orig.Body, Properties: props},
		SysFlag: orig.SysFlag, BornTimestamp: orig.BornTimestamp, BornHost: orig.BornHost, ReconsumeTimes: orig.ReconsumeTimes + 1}
	if orig.ReconsumeTimes >= maxReconsume || delayLevel < 0 {
		b.toDLQ(m, group) // with its reconsume times + 1 too, as Java sets them after either branch
	} else {
		if delayLevel == 0 {
			delayLevel = 3 + orig.ReconsumeTimes
		}
		props[propDelay] = strconv.Itoa(int(delayLevel))
	}
	if _, err := b.put(m); err != nil {
		return response(remoting.SystemError, err.Error())
	}
	return success(nil, nil)
}
