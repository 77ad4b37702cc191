package message

import (
	"testing"
)

// A Pop answer that starts with a retry message (its handle set by the broker, its topic renamed to the one asked
// for, on a queue id the topic also has) and goes on with the topic's own messages: the handles of those are
// built from the topic's offsets, which the retry message's queue offset must not shift (apache/rocketmq #7003).
func TestSetReceiptHandlesRetryFirst(t *testing.T) {
	retry := ExtraInfo{CkQueueOffset: 7, PopTime: 1000, InvisibleTime: 5000, ReviveQid: 2, TopicType: 1, BrokerName: "broker-a",
		QueueID: 0, QueueOffset: 7, HasQueueOffset: true}
	msgs := []*Ext{
		{Message: Message{Topic: "TopicTest", Properties: map[string]string{PropertyPopCK: retry.String()}}, QueueID: 0, QueueOffset: 7},
		{Message: Message{Topic: "TopicTest", Properties: map[string]string{}}, QueueID: 0, QueueOffset: 100},
		{Message: Message{Topic: "TopicTest", Properties: map[string]string{}}, QueueID: 0, QueueOffset: 101},
	}
	answer := PopAnswer{PopTime: 2000, InvisibleTime: 5000, ReviveQid: 3,
		StartOffsetInfo: BuildStartOffsetInfo([]StartOffset{{TopicType: 0, QueueID: 0, Offset: 100}, {TopicType: 1, QueueID: 0, Offset: 7}}),
		MsgOffsetInfo: BuildMsgOffsetInfo([]MsgOffsets{{TopicType: 0, QueueID: 0, Offsets: []int64{100, 101}},
			{TopicType: 1, QueueID: 0, Offsets: []int64{7}}})}
	handles, err := SetReceiptHandles(msgs, answer, "broker-a", false)
	if err != nil {
		t.Fatal(err)
	}
	want := []ExtraInfo{retry,
		{CkQueueOffset: 100, PopTime: 2000, InvisibleTime: 5000, ReviveQid: 3, BrokerName: "broker-a", QueueOffset: 100, HasQueueOffset: true},
		{CkQueueOffset: 100, PopTime: 2000, InvisibleTime: 5000, ReviveQid: 3, BrokerName: "broker-a", QueueOffset: 101, HasQueueOffset: true}}
	for i := range want {
		if handles[i] != want[i] {
			t.Errorf("handle %d = %+v, want %+v", i, handles[i], want[i])
		}
	}
}
