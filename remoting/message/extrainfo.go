package message

import (
	"fmt"
	"strconv"
	"strings"
)

// TopicType is the topic mark of ExtraInfoUtil ("retry" there): which topic a popped message came from, written
// as one digit in receipt handles and in the Pop response headers' info strings.
type TopicType uint8

const (
	TopicNormal  TopicType = 0 // NORMAL_TOPIC "0": the topic itself
	TopicRetryV1 TopicType = 1 // RETRY_TOPIC "1": %RETRY%{group}_{topic}, and any other %RETRY% topic
	TopicRetryV2 TopicType = 2 // RETRY_TOPIC_V2 "2": %RETRY%{group}+{topic}
)

// String is the digit Java writes.
func (t TopicType) String() string { return strconv.Itoa(int(t)) }

// TopicTypeOf is the mark of a topic (ExtraInfoUtil.getRetry): V2 for a %RETRY% topic with a '+' anywhere in it
// (KeyBuilder.isPopRetryTopicV2), V1 for every other %RETRY% topic, including a push consumer's %RETRY%{group}.
func TopicTypeOf(topic string) TopicType {
	switch {
	case !strings.HasPrefix(topic, RetryGroupTopicPrefix):
		return TopicNormal
	case strings.Contains(topic, "+"):
		return TopicRetryV2
	default:
		return TopicRetryV1
	}
}

// RealTopic is the topic a message of this mark was popped from, given the topic and group of the request
// (ExtraInfoUtil.getRealTopic; KeyBuilder.buildPopRetryTopicV1 and V2).
func (t TopicType) RealTopic(topic, group string) string {
	switch t {
	case TopicRetryV1:
		return RetryGroupTopicPrefix + group + "_" + topic
	case TopicRetryV2:
		return RetryGroupTopicPrefix + group + "+" + topic
	default:
		return topic
	}
}

func parseTopicType(s string) (TopicType, error) {
	switch s {
	case "0":
		return TopicNormal, nil
	case "1":
		return TopicRetryV1, nil
	case "2":
		return TopicRetryV2, nil
	}
	return 0, malformed("topic mark %q (0, 1 or 2)", s)
}

// javaSplit is Java's String.split(sep) for a one-char separator that is no regex metachar: the fields, with
// trailing empty ones removed, and the whole string when sep does not occur ("" gives one empty field).
func javaSplit(s, sep string) []string {
	if !strings.Contains(s, sep) {
		return []string{s}
	}
	f := strings.Split(s, sep)
	for len(f) > 0 && f[len(f)-1] == "" {
		f = f[:len(f)-1]
	}
	return f
}

// Numbers are read as Long.valueOf and Integer.parseInt read them: an optional sign and decimal digits, in range.
// Java also takes non-ASCII Unicode digits; these do not.
func parseInt64(s, what string) (int64, error) {
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, malformed("%s %q", what, s)
	}
	return v, nil
}

func parseInt32(s, what string) (int32, error) {
	v, err := strconv.ParseInt(s, 10, 32)
	if err != nil {
		return 0, malformed("%s %q", what, s)
	}
	return int32(v), nil
}

// ExtraInfo is a Pop receipt handle: the POP_CK property of a popped message and the extraInfo of ACK_MESSAGE
// and CHANGE_MESSAGE_INVISIBLETIME (ExtraInfoUtil.buildExtraInfo), space-separated in this order.
type ExtraInfo struct {
	CkQueueOffset  int64     // ckQueueOffset: the queue offset the pop started at (its checkpoint)
	PopTime        int64     // popTime, ms since the epoch
	InvisibleTime  int64     // invisibleTime, ms
	ReviveQid      int32     // reviveQid; PopOrderReviveQueue for an orderly pop
	TopicType      TopicType // the topic mark: whether the message came from a retry topic
	BrokerName     string    // brokerName; a space in it cannot be read back
	QueueID        int32     // queueId
	QueueOffset    int64     // msgQueueOffset: the message's own queue offset, when HasQueueOffset
	HasQueueOffset bool      // the 8-field form; the 7-argument buildExtraInfo leaves the offset out
}

// String is the receipt handle exactly as ExtraInfoUtil.buildExtraInfo writes it.
func (e ExtraInfo) String() string {
	b := make([]byte, 0, 64+len(e.BrokerName))
	b = strconv.AppendInt(b, e.CkQueueOffset, 10)
	b = append(b, KeySeparator...)
	b = strconv.AppendInt(b, e.PopTime, 10)
	b = append(b, KeySeparator...)
	b = strconv.AppendInt(b, e.InvisibleTime, 10)
	b = append(b, KeySeparator...)
	b = strconv.AppendInt(b, int64(e.ReviveQid), 10)
	b = append(b, KeySeparator...)
	b = strconv.AppendInt(b, int64(e.TopicType), 10)
	b = append(b, KeySeparator...)
	b = append(b, e.BrokerName...)
	b = append(b, KeySeparator...)
	b = strconv.AppendInt(b, int64(e.QueueID), 10)
	if e.HasQueueOffset {
		b = append(b, KeySeparator...)
		b = strconv.AppendInt(b, e.QueueOffset, 10)
	}
	return string(b)
}

// ParseExtraInfo reads a receipt handle as ExtraInfoUtil.split and its getters do: fields split at spaces with
// trailing empty ones dropped, then read by position. Java reads only the fields a caller asks for; this needs
// the 7 that buildExtraInfo always writes, reads an 8th as the queue offset, and ignores any after it (the
// proxy's ReceiptHandle appends a commit log offset). The topic mark must be 0, 1 or 2 (Java's getRealTopic
// refuses others).
func ParseExtraInfo(s string) (ExtraInfo, error) {
	e, err := parseExtraInfo(s)
	if err != nil {
		return ExtraInfo{}, fmt.Errorf("message: receipt handle: %w", err)
	}
	return e, nil
}

func parseExtraInfo(s string) (e ExtraInfo, err error) {
	f := javaSplit(s, KeySeparator)
	if len(f) < 7 {
		return e, malformed("%d fields (at least 7)", len(f))
	}
	if e.CkQueueOffset, err = parseInt64(f[0], "ckQueueOffset"); err != nil {
		return e, err
	}
	if e.PopTime, err = parseInt64(f[1], "popTime"); err != nil {
		return e, err
	}
	if e.InvisibleTime, err = parseInt64(f[2], "invisibleTime"); err != nil {
		return e, err
	}
	if e.ReviveQid, err = parseInt32(f[3], "reviveQid"); err != nil {
		return e, err
	}
	if e.TopicType, err = parseTopicType(f[4]); err != nil {
		return e, err
	}
	e.BrokerName = f[5]
	if e.QueueID, err = parseInt32(f[6], "queueId"); err != nil {
		return e, err
	}
	if len(f) > 7 {
		e.HasQueueOffset = true
		if e.QueueOffset, err = parseInt64(f[7], "queueOffset"); err != nil {
			return e, err
		}
	}
	return e, nil
}

// queueKey is the map key Java's info parsers use for an entry: mark@queue (getStartOffsetInfoMapKey).
func queueKey(t TopicType, queue string) string { return t.String() + "@" + queue }

// StartOffset is one entry of a Pop response's startOffsetInfo (ExtraInfoUtil.buildStartOffsetInfo): the queue
// offset a pop started at in one queue, which receipt handles carry as CkQueueOffset.
type StartOffset struct {
	TopicType TopicType
	QueueID   int32
	Offset    int64
}

// Key is the key of this entry in the map Java's parseStartOffsetInfo returns (getStartOffsetInfoMapKey).
func (e StartOffset) Key() string { return queueKey(e.TopicType, strconv.Itoa(int(e.QueueID))) }

// MsgOffsets is one entry of a Pop response's msgOffsetInfo (ExtraInfoUtil.buildMsgOffsetInfo): the queue
// offsets of the messages popped from one queue, in the order of the response body.
type MsgOffsets struct {
	TopicType TopicType
	QueueID   int32
	Offsets   []int64
}

// Key is the key of this entry in the map Java's parseMsgOffsetInfo returns.
func (e MsgOffsets) Key() string { return queueKey(e.TopicType, strconv.Itoa(int(e.QueueID))) }

// OrderCount is one entry of an orderly Pop response's orderCountInfo: how often messages were consumed. Per
// queue (buildQueueIdOrderCountInfo, the least count, for old clients) or, when PerMessage, for the message at
// QueueOffset (buildQueueOffsetOrderCountInfo, whose queue field is "qo{queueId}%{queueOffset}").
type OrderCount struct {
	TopicType   TopicType
	QueueID     int32
	PerMessage  bool
	QueueOffset int64 // only when PerMessage
	Count       int32
}

// Key is the key of this entry in the map Java's parseOrderCountInfo returns (getStartOffsetInfoMapKey or
// getQueueOffsetMapKey).
func (e OrderCount) Key() string { return queueKey(e.TopicType, e.queueField()) }

func (e OrderCount) queueField() string {
	if e.PerMessage {
		return "qo" + strconv.Itoa(int(e.QueueID)) + "%" + strconv.FormatInt(e.QueueOffset, 10)
	}
	return strconv.Itoa(int(e.QueueID))
}

// BuildStartOffsetInfo joins entries as successive buildStartOffsetInfo calls on one StringBuilder do:
// "mark queueId offset", separated by ';'.
func BuildStartOffsetInfo(entries []StartOffset) string {
	var b []byte
	for i, e := range entries {
		if i > 0 {
			b = append(b, ';')
		}
		b = strconv.AppendInt(b, int64(e.TopicType), 10)
		b = append(b, KeySeparator...)
		b = strconv.AppendInt(b, int64(e.QueueID), 10)
		b = append(b, KeySeparator...)
		b = strconv.AppendInt(b, e.Offset, 10)
	}
	return string(b)
}

// BuildMsgOffsetInfo joins entries as successive buildMsgOffsetInfo calls do: "mark queueId o1,o2,...",
// separated by ';'. Like Java's, an entry without offsets does not parse.
func BuildMsgOffsetInfo(entries []MsgOffsets) string {
	var b []byte
	for i, e := range entries {
		if i > 0 {
			b = append(b, ';')
		}
		b = strconv.AppendInt(b, int64(e.TopicType), 10)
		b = append(b, KeySeparator...)
		b = strconv.AppendInt(b, int64(e.QueueID), 10)
		b = append(b, KeySeparator...)
		for j, o := range e.Offsets {
			if j > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendInt(b, o, 10)
		}
	}
	return string(b)
}

// BuildOrderCountInfo joins entries as successive buildQueueIdOrderCountInfo and buildQueueOffsetOrderCountInfo
// calls do: "mark queueId count" or "mark qo{queueId}%{queueOffset} count", separated by ';'.
func BuildOrderCountInfo(entries []OrderCount) string {
	var b []byte
	for i, e := range entries {
		if i > 0 {
			b = append(b, ';')
		}
		b = strconv.AppendInt(b, int64(e.TopicType), 10)
		b = append(b, KeySeparator...)
		b = append(b, e.queueField()...)
		b = append(b, KeySeparator...)
		b = strconv.AppendInt(b, int64(e.Count), 10)
	}
	return string(b)
}

// parseInfo splits an info string as Java's parse*Info do: at ';', each entry at spaces into exactly three
// fields (trailing empty entries and fields dropped, as String.split does), and calls one for each. An empty
// string is no info (Java returns null). Java keys entries by the raw text of the first two fields and checks
// neither; here both are parsed, and a duplicate is judged by the parsed key, which is stricter ("0 01 5" and
// "0 1 6" are two entries to Java).
func parseInfo(s, what string, one func(f []string) (key string, err error)) error {
	if s == "" {
		return nil
	}
	seen := make(map[string]struct{})
	for i, entry := range javaSplit(s, ";") {
		f := javaSplit(entry, KeySeparator)
		if len(f) != 3 {
			return fmt.Errorf("message: %s entry %d: %w", what, i, malformed("%d fields (3)", len(f)))
		}
		key, err := one(f)
		if err != nil {
			return fmt.Errorf("message: %s entry %d: %w", what, i, err)
		}
		if _, dup := seen[key]; dup {
			return fmt.Errorf("message: %s entry %d: %w", what, i, malformed("duplicate key %s", key))
		}
		seen[key] = struct{}{}
	}
	return nil
}

// ParseStartOffsetInfo reads a startOffsetInfo (ExtraInfoUtil.parseStartOffsetInfo), in its order.
func ParseStartOffsetInfo(s string) ([]StartOffset, error) {
	var out []StartOffset
	err := parseInfo(s, "startOffsetInfo", func(f []string) (string, error) {
		var e StartOffset
		var err error
		if e.TopicType, err = parseTopicType(f[0]); err != nil {
			return "", err
		}
		if e.QueueID, err = parseInt32(f[1], "queueId"); err != nil {
			return "", err
		}
		if e.Offset, err = parseInt64(f[2], "startOffset"); err != nil {
			return "", err
		}
		out = append(out, e)
		return e.Key(), nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ParseMsgOffsetInfo reads a msgOffsetInfo (ExtraInfoUtil.parseMsgOffsetInfo), in its order. The offsets are
// split at ',' as Java splits them; an entry without any (Java: an empty list) is an error here, since no
// builder can write one that reads back.
func ParseMsgOffsetInfo(s string) ([]MsgOffsets, error) {
	var out []MsgOffsets
	err := parseInfo(s, "msgOffsetInfo", func(f []string) (string, error) {
		var e MsgOffsets
		var err error
		if e.TopicType, err = parseTopicType(f[0]); err != nil {
			return "", err
		}
		if e.QueueID, err = parseInt32(f[1], "queueId"); err != nil {
			return "", err
		}
		list := javaSplit(f[2], ",")
		if len(list) == 0 {
			return "", malformed("no offsets in %q", f[2])
		}
		e.Offsets = make([]int64, 0, len(list))
		for _, o := range list {
			v, err := parseInt64(o, "msg offset")
			if err != nil {
				return "", err
			}
			e.Offsets = append(e.Offsets, v)
		}
		out = append(out, e)
		return e.Key(), nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ParseOrderCountInfo reads an orderCountInfo (ExtraInfoUtil.parseOrderCountInfo), in its order.
func ParseOrderCountInfo(s string) ([]OrderCount, error) {
	var out []OrderCount
	err := parseInfo(s, "orderCountInfo", func(f []string) (string, error) {
		var e OrderCount
		var err error
		if e.TopicType, err = parseTopicType(f[0]); err != nil {
			return "", err
		}
		if rest, ok := strings.CutPrefix(f[1], "qo"); ok {
			qid, off, found := strings.Cut(rest, "%")
			if !found {
				return "", malformed("queue field %q: no %%", f[1])
			}
			e.PerMessage = true
			if e.QueueID, err = parseInt32(qid, "queueId"); err != nil {
				return "", err
			}
			if e.QueueOffset, err = parseInt64(off, "queueOffset"); err != nil {
				return "", err
			}
		} else if e.QueueID, err = parseInt32(f[1], "queueId"); err != nil {
			return "", err
		}
		if e.Count, err = parseInt32(f[2], "count"); err != nil {
			return "", err
		}
		out = append(out, e)
		return e.Key(), nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
