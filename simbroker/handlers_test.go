package simbroker

import (
	"encoding/json"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/rocketpilot/rocketpilot/remoting"
	"github.com/rocketpilot/rocketpilot/remoting/message"
)

// Consumer offsets: a group that never committed starts at 0 while the queue still holds its first message;
// committed offsets are answered back; min, max and search by timestamp follow the queue.
func TestOffsets(t *testing.T) {
	b := startBroker(t, Options{Topics: []remoting.TopicConfig{topicConfig("T", 1)}, QueueCapacity: 3})
	rc := dial(t, b.Addr())
	q := map[string]string{"consumerGroup": "g", "topic": "T", "queueId": "0"}
	if r := rc.call(remoting.QueryConsumerOffset, q, nil); r.Code != remoting.Success || r.Ext("offset") != "0" {
		t.Fatalf("offset of a new group: %d %v", r.Code, r.ExtFields)
	}
	var mid int64
	for i := range 5 {
		if i == 3 { // a timestamp strictly between the store times of messages 2 and 3
			time.Sleep(5 * time.Millisecond)
			mid = time.Now().UnixMilli()
			time.Sleep(5 * time.Millisecond)
		}
		if r := sendV2(rc, "T", 0, "m"+strconv.Itoa(i), nil); r.Code != remoting.Success {
			t.Fatalf("send %d: %d %s", i, r.Code, r.Remark)
		}
	}
	// Capacity 3: offsets 0 and 1 were dropped, oldest first.
	if b.Dropped() != 2 {
		t.Fatalf("dropped %d, want 2", b.Dropped())
	}
	offset := func(code int32, ext map[string]string) string {
		r := rc.call(code, ext, nil)
		if r.Code != remoting.Success {
			t.Fatalf("code %d: %d %s", code, r.Code, r.Remark)
		}
		return r.Ext("offset")
	}
	tq := map[string]string{"topic": "T", "queueId": "0"}
	if lo, hi := offset(remoting.GetMinOffset, tq), offset(remoting.GetMaxOffset, tq); lo != "2" || hi != "5" {
		t.Fatalf("min %s max %s, want 2 5", lo, hi)
	}
	search := map[string]string{"topic": "T", "queueId": "0", "timestamp": strconv.FormatInt(mid, 10)}
	if got := offset(remoting.SearchOffsetByTimestamp, search); got != "3" {
		t.Fatalf("search by timestamp: %s, want 3", got)
	}
	// The queue no longer holds its first message: a group without an offset is not found.
	if r := rc.call(remoting.QueryConsumerOffset, q, nil); r.Code != remoting.QueryNotFound {
		t.Fatalf("offset of a new group after the queue moved: %d", r.Code)
	}
	upd := map[string]string{"consumerGroup": "g", "topic": "T", "queueId": "0", "commitOffset": "4"}
	if r := rc.call(remoting.UpdateConsumerOffset, upd, nil); r.Code != remoting.Success {
		t.Fatalf("update: %d", r.Code)
	}
	if got := offset(remoting.QueryConsumerOffset, q); got != "4" {
		t.Fatalf("committed offset %s, want 4", got)
	}
	// A pull before the queue's first message is moved to it.
	if r := rc.call(remoting.PullMessage, pullReq("T", 0, 0, 0), nil); r.Code != remoting.PullOffsetMoved || r.Ext("nextBeginOffset") != "2" {
		t.Fatalf("pull of a dropped offset: %d %v", r.Code, r.ExtFields)
	}
}

func heartbeat(clientID, group string, topics ...string) []byte {
	type sub struct {
		Topic     string `json:"topic"`
		SubString string `json:"subString"`
	}
	var subs []sub
	for _, t := range topics {
		subs = append(subs, sub{t, "*"})
	}
	b, _ := json.Marshal(map[string]any{"clientID": clientID, "consumerDataSet": []map[string]any{{
		"groupName": group, "consumeType": "CONSUME_PASSIVELY", "messageModel": "CLUSTERING", "subscriptionDataSet": subs}}})
	return b
}

// Consumer groups: heartbeats make the members GET_CONSUMER_LIST_BY_GROUP lists; each change is pushed to the
// group's clients as NOTIFY_CONSUMER_IDS_CHANGED; a closed connection leaves the group.
func TestConsumerGroupMembership(t *testing.T) {
	b := startBroker(t, Options{Topics: []remoting.TopicConfig{topicConfig("T", 4)}})
	c1, c2 := dial(t, b.Addr()), dial(t, b.Addr())
	list := func() []string {
		r := c1.call(remoting.GetConsumerListByGroup, map[string]string{"consumerGroup": "g"}, nil)
		if r.Code != remoting.Success {
			return nil
		}
		var body struct {
			ConsumerIDList []string `json:"consumerIdList"`
		}
		if err := json.Unmarshal(r.Body, &body); err != nil {
			t.Fatal(err)
		}
		return body.ConsumerIDList
	}
	if r := c1.call(remoting.GetConsumerListByGroup, map[string]string{"consumerGroup": "g"}, nil); r.Code != remoting.SystemError || r.Remark != "no consumer for this group, g" {
		t.Fatalf("list of an empty group: %d %q", r.Code, r.Remark)
	}
	if r := c1.call(remoting.HeartBeat, nil, heartbeat("c1", "g", "T")); r.Code != remoting.Success {
		t.Fatalf("heartbeat: %d %s", r.Code, r.Remark)
	}
	notified := func(rc *rawClient) {
		t.Helper()
		select {
		case n := <-rc.pushed:
			if n.Code != remoting.NotifyConsumerIdsChanged || n.Ext("consumerGroup") != "g" || !n.IsOneway() {
				t.Fatalf("pushed %v", n)
			}
		case <-time.After(3 * time.Second):
			t.Fatal("no NOTIFY_CONSUMER_IDS_CHANGED")
		}
	}
	notified(c1)
	c2.call(remoting.HeartBeat, nil, heartbeat("c2", "g", "T"))
	notified(c1)
	notified(c2)
	if got := list(); !slices.Equal(got, []string{"c1", "c2"}) {
		t.Fatalf("members %v", got)
	}
	// A repeated heartbeat changes nothing and notifies nobody.
	c1.call(remoting.HeartBeat, nil, heartbeat("c1", "g", "T"))
	select {
	case n := <-c1.pushed:
		t.Fatalf("notified on a repeated heartbeat: %v", n)
	case <-time.After(100 * time.Millisecond):
	}
	c2.c.Close()
	notified(c1)
	if got := list(); !slices.Equal(got, []string{"c1"}) {
		t.Fatalf("members after a connection closed: %v", got)
	}
	if _, ok := b.store.topic(RetryTopicPrefix + "g"); !ok {
		t.Fatal("the group has no retry topic")
	}
	c1.call(remoting.UnregisterClient, map[string]string{"clientID": "c1", "consumerGroup": "g"}, nil)
	if got := list(); got != nil {
		t.Fatalf("members after unregister: %v", got)
	}
}

// Queue locks for orderly consumers: a queue locked by one client is not granted to another until unlocked.
func TestLockBatch(t *testing.T) {
	b := startBroker(t, Options{Topics: []remoting.TopicConfig{topicConfig("T", 2)}})
	rc := dial(t, b.Addr())
	lock := func(code int32, client string, queues ...int32) []int32 {
		var mqs []messageQueue
		for _, q := range queues {
			mqs = append(mqs, messageQueue{Topic: "T", BrokerName: "broker-a", QueueID: q})
		}
		body, _ := json.Marshal(lockBatchBody{ConsumerGroup: "g", ClientID: client, MQSet: mqs})
		r := rc.call(code, nil, body)
		if r.Code != remoting.Success {
			t.Fatalf("code %d: %d %s", code, r.Code, r.Remark)
		}
		if code == remoting.UnlockBatchMQ {
			return nil
		}
		var out struct {
			LockOKMQSet []messageQueue `json:"lockOKMQSet"`
		}
		if err := json.Unmarshal(r.Body, &out); err != nil {
			t.Fatal(err)
		}
		var got []int32
		for _, mq := range out.LockOKMQSet {
			got = append(got, mq.QueueID)
		}
		return got
	}
	if got := lock(remoting.LockBatchMQ, "c1", 0); !slices.Equal(got, []int32{0}) {
		t.Fatalf("c1 locked %v", got)
	}
	if got := lock(remoting.LockBatchMQ, "c2", 0, 1); !slices.Equal(got, []int32{1}) {
		t.Fatalf("c2 locked %v, want only the free queue", got)
	}
	lock(remoting.UnlockBatchMQ, "c1", 0)
	if got := lock(remoting.LockBatchMQ, "c2", 0); !slices.Equal(got, []int32{0}) {
		t.Fatalf("c2 after c1 unlocked: %v", got)
	}
}

// A message sent back goes to the group's retry topic after its delay level, with its reconsume times counted
// and its original topic kept; once they are used up it goes to the dead-letter topic.
func TestSendBackRetriesThenDeadLetters(t *testing.T) {
	levels := []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 30 * time.Millisecond, 40 * time.Millisecond}
	b := startBroker(t, Options{Topics: []remoting.TopicConfig{topicConfig("T", 1)}, DelayLevels: levels})
	rc := dial(t, b.Addr())
	sendV2(rc, "T", 0, "payload", map[string]string{"UNIQ_KEY": "u1"})
	pullOne := func(topic string) *message.Ext {
		t.Helper()
		r := rc.call(remoting.PullMessage, pullReq(topic, 0, 0, 3000), nil)
		if r.Code != remoting.Success {
			t.Fatalf("pull %s: %d %s", topic, r.Code, r.Remark)
		}
		msgs, err := message.DecodeExts(r.Body)
		if err != nil || len(msgs) != 1 {
			t.Fatalf("pulled %v, %v", msgs, err)
		}
		return msgs[0]
	}
	orig := pullOne("T")
	back := map[string]string{"offset": strconv.FormatInt(orig.CommitLogOffset, 10), "group": "g", "delayLevel": "0",
		"originMsgId": "u1", "originTopic": "T", "maxReconsumeTimes": "1"}
	if r := rc.call(remoting.ConsumerSendMsgBack, back, nil); r.Code != remoting.Success {
		t.Fatalf("send back: %d %s", r.Code, r.Remark)
	}
	retry := pullOne(RetryTopicPrefix + "g") // delivered after level 3's delay
	if retry.ReconsumeTimes != 1 || retry.Properties[propRetryTopic] != "T" || string(retry.Body) != "payload" ||
		retry.Properties[propOriginMessageID] != "u1" {
		t.Fatalf("retried message: reconsume %d, props %v", retry.ReconsumeTimes, retry.Properties)
	}
	back["offset"] = strconv.FormatInt(retry.CommitLogOffset, 10)
	if r := rc.call(remoting.ConsumerSendMsgBack, back, nil); r.Code != remoting.Success {
		t.Fatalf("second send back: %d %s", r.Code, r.Remark)
	}
	dead := pullOne(DLQTopicPrefix + "g")
	if dead.Properties[propRetryTopic] != "T" || string(dead.Body) != "payload" || dead.ReconsumeTimes != 2 {
		t.Fatalf("dead-lettered message: reconsume %d, props %v", dead.ReconsumeTimes, dead.Properties)
	}

	// A send to the retry topic goes to the dead-letter topic once its reconsume times exceed the maximum
	// (handleRetryAndDLQ): 1 of at most 1 is kept, 2 is not. Either way the answer names the queue asked for.
	retrySend := func(reconsume string) *remoting.Command {
		t.Helper()
		return rc.call(remoting.SendMessageV2, map[string]string{"a": "pg", "b": RetryTopicPrefix + "g", "e": "0", "f": "0",
			"g": "0", "h": "0", "i": "", "j": reconsume, "l": "1"}, []byte("again-"+reconsume))
	}
	if r := retrySend("1"); r.Code != remoting.Success || r.Ext("queueId") != "0" || r.Ext("queueOffset") != "1" {
		t.Fatalf("retry send within the maximum: %d %v", r.Code, r.ExtFields)
	}
	if r := retrySend("2"); r.Code != remoting.Success || r.Ext("queueId") != "0" || r.Ext("queueOffset") != "1" {
		t.Fatalf("retry send beyond the maximum: %d %v (want the DLQ's second offset)", r.Code, r.ExtFields)
	}
	back["offset"] = "999999"
	if r := rc.call(remoting.ConsumerSendMsgBack, back, nil); r.Code != remoting.SystemError || r.Remark != "look message by offset failed, 999999" {
		t.Fatalf("send back of an unknown offset: %d %q", r.Code, r.Remark)
	}
}

// Sends the Java broker refuses: an unknown topic, a read-only topic, a queue id beyond the topic's, a broker that
// is not writable (a slave, or a master with SetWritable(false)); a batch, stored as one message each in one queue;
// and a delayed send, answered with the queue it asked for although it waits in the delay topic.
func TestSendRules(t *testing.T) {
	b := startBroker(t, Options{Topics: []remoting.TopicConfig{topicConfig("T", 2),
		{TopicName: "RO", ReadQueueNums: 1, WriteQueueNums: 1, Perm: remoting.PermRead}}})
	rc := dial(t, b.Addr())
	if r := sendV2(rc, "nope", 0, "x", nil); r.Code != remoting.TopicNotExist {
		t.Fatalf("unknown topic: %d %s", r.Code, r.Remark)
	}
	if r := sendV2(rc, "RO", 0, "x", nil); r.Code != remoting.NoPermission || r.Remark != "the topic[RO] sending message is forbidden" {
		t.Fatalf("read-only topic: %d %q", r.Code, r.Remark)
	}
	if r := sendV2(rc, "T", 7, "x", nil); r.Code != remoting.InvalidParameter {
		t.Fatalf("queue 7 of 2: %d %s", r.Code, r.Remark)
	}
	body, err := message.EncodeBatch([]message.Message{{Body: []byte("one"), Properties: map[string]string{"UNIQ_KEY": "1"}},
		{Body: []byte("two"), Properties: map[string]string{"UNIQ_KEY": "2"}}})
	if err != nil {
		t.Fatal(err)
	}
	r := rc.call(remoting.SendBatchMessage, map[string]string{"a": "pg", "b": "T", "e": "1", "f": "0", "g": "0", "h": "0", "m": "true"}, body)
	if r.Code != remoting.Success || r.Ext("queueOffset") != "0" {
		t.Fatalf("batch: %d %s %v", r.Code, r.Remark, r.ExtFields)
	}
	p := rc.call(remoting.PullMessage, pullReq("T", 1, 0, 0), nil)
	msgs, err := message.DecodeExts(p.Body)
	if err != nil || len(msgs) != 2 || string(msgs[1].Body) != "two" || msgs[1].QueueOffset != 1 {
		t.Fatalf("batch pulled %v, %v", msgs, err)
	}
	if r := sendV2(rc, "T", 1, "later", map[string]string{"DELAY": "1"}); r.Code != remoting.Success || r.Ext("queueId") != "1" {
		t.Fatalf("delayed send: %d %v", r.Code, r.ExtFields)
	}
	slave := startBroker(t, Options{Name: "broker-a", Cluster: "DefaultCluster", ID: 1, Master: b})
	if r := sendV2(dial(t, slave.Addr()), "T", 0, "x", nil); r.Code != remoting.NoPermission {
		t.Fatalf("send to a slave: %d", r.Code)
	}
	b.SetWritable(false)
	if r := sendV2(rc, "T", 0, "x", nil); r.Code != remoting.NoPermission {
		t.Fatalf("send to a broker that is not writable: %d", r.Code)
	}
}

// A pull filters by tag: a queue holding only other tags answers PULL_RETRY_IMMEDIATELY past them.
func TestPullFiltersByTag(t *testing.T) {
	b := startBroker(t, Options{Topics: []remoting.TopicConfig{topicConfig("T", 1)}})
	rc := dial(t, b.Addr())
	sendV2(rc, "T", 0, "a", map[string]string{"TAGS": "A"})
	sendV2(rc, "T", 0, "b", map[string]string{"TAGS": "B"})
	req := pullReq("T", 0, 0, 0)
	req["subscription"] = "B || C"
	r := rc.call(remoting.PullMessage, req, nil)
	msgs, _ := message.DecodeExts(r.Body)
	if r.Code != remoting.Success || len(msgs) != 1 || string(msgs[0].Body) != "b" || r.Ext("nextBeginOffset") != "2" {
		t.Fatalf("filtered pull: %d, %d messages, %v", r.Code, len(msgs), r.ExtFields)
	}
	req["subscription"] = "C"
	if r := rc.call(remoting.PullMessage, req, nil); r.Code != remoting.PullRetryImmediately || r.Ext("nextBeginOffset") != "2" {
		t.Fatalf("nothing matches: %d %v", r.Code, r.ExtFields)
	}
}
