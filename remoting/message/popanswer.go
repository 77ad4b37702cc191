package message

import (
	"fmt"
	"slices"
	"strconv"
)

// PopAnswer is the header of POP_MESSAGE's answer (PopMessageResponseHeader): what a client needs, besides the
// body, to give each popped message its receipt handle.
type PopAnswer struct {
	PopTime, InvisibleTime int64
	ReviveQid              int32
	RestNum                int64
	StartOffsetInfo        string
	MsgOffsetInfo          string
	OrderCountInfo         string
}

// SetReceiptHandles gives each popped message its receipt handle (PropertyPopCK) and first pop time, as the Java
// client's MQClientAPIImpl.processPopResponse does: a message the broker sent without a handle (one of the topic
// itself; the broker sets the handles of retry messages) gets one built from the answer's start and message
// offsets of its queue, and, for an orderly pop, its consume count as ReconsumeTimes. brokerName is the group
// popped from. It returns each message's handle, parsed.
func SetReceiptHandles(msgs []*Ext, a PopAnswer, brokerName string, order bool) ([]ExtraInfo, error) {
	starts, err := ParseStartOffsetInfo(a.StartOffsetInfo)
	if err != nil {
		return nil, err
	}
	offsets, err := ParseMsgOffsetInfo(a.MsgOffsetInfo)
	if err != nil {
		return nil, err
	}
	counts, err := ParseOrderCountInfo(a.OrderCountInfo)
	if err != nil {
		return nil, err
	}
	startOf := make(map[string]int64, len(starts))
	for _, s := range starts {
		startOf[s.Key()] = s.Offset
	}
	offsetsOf := make(map[string][]int64, len(offsets))
	for _, m := range offsets {
		offsetsOf[m.Key()] = m.Offsets
	}
	countOf := make(map[string]int32, len(counts))
	for _, c := range counts {
		countOf[c.Key()] = c.Count
	}
	// buildQueueOffsetSortedMap: the queue offsets of the body's messages per topic mark and queue, in order. A
	// message with a handle already (a retry message, which the broker renamed to the topic asked for) counts
	// under its handle's mark, not its topic's (ExtraInfoUtil.getRetry(topic, popCk), since 5.1.4): it is not
	// one of the topic's own queue offsets.
	sorted := map[string][]int64{}
	for _, m := range msgs {
		mark := TopicTypeOf(m.Topic)
		if ck, ok := m.Properties[PropertyPopCK]; ok {
			if f := javaSplit(ck, KeySeparator); len(f) >= 5 {
				if t, err := parseTopicType(f[4]); err == nil {
					mark = t
				}
			}
		}
		key := StartOffset{TopicType: mark, QueueID: m.QueueID}.Key()
		sorted[key] = append(sorted[key], m.QueueOffset)
	}
	handles := make([]ExtraInfo, 0, len(msgs))
	for _, m := range msgs {
		if m.Properties == nil {
			m.Properties = map[string]string{}
		}
		if _, ok := m.Properties[PropertyPopCK]; !ok {
			mark := TopicTypeOf(m.Topic)
			key := StartOffset{TopicType: mark, QueueID: m.QueueID}.Key()
			i := slices.Index(sorted[key], m.QueueOffset)
			start, ok := startOf[key]
			if !ok || i < 0 || i >= len(offsetsOf[key]) {
				return nil, fmt.Errorf("popped message %s@%d at %d is not in startOffsetInfo %q / msgOffsetInfo %q",
					m.Topic, m.QueueID, m.QueueOffset, a.StartOffsetInfo, a.MsgOffsetInfo)
			}
			m.Properties[PropertyPopCK] = ExtraInfo{CkQueueOffset: start, PopTime: a.PopTime,
				InvisibleTime: a.InvisibleTime, ReviveQid: a.ReviveQid, TopicType: mark, BrokerName: brokerName,
				QueueID: m.QueueID, QueueOffset: offsetsOf[key][i], HasQueueOffset: true}.String()
			if order {
				qo := OrderCount{TopicType: mark, QueueID: m.QueueID, PerMessage: true, QueueOffset: m.QueueOffset}.Key()
				count, ok := countOf[qo]
				if !ok {
					count = countOf[key]
				}
				if count > 0 {
					m.ReconsumeTimes = count
				}
			}
		}
		if _, ok := m.Properties[PropertyFirstPopTime]; !ok {
			m.Properties[PropertyFirstPopTime] = strconv.FormatInt(a.PopTime, 10)
		}
		h, err := ParseExtraInfo(m.Properties[PropertyPopCK])
		if err != nil {
			return nil, fmt.Errorf("receipt handle %q: %w", m.Properties[PropertyPopCK], err)
		}
		handles = append(handles, h)
	}
	return handles, nil
}
