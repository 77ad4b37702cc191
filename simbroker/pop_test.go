package simbroker

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rocketpilot/rocketpilot/internal/hexfixture"
	"github.com/rocketpilot/rocketpilot/remoting"
	"github.com/rocketpilot/rocketpilot/remoting/message"
)

// popClient is a Pop consumer written from the Java client: the request headers are PopMessageRequestHeader,
// AckMessageRequestHeader and ChangeInvisibleTimeRequestHeader, the batch ack body BatchAckMessageRequestBody with
// BatchAck, and a popped message's receipt handle (POP_CK) is built as MQClientAPIImpl.processPopResponse builds
// it from PopMessageResponseHeader (ExtraInfoUtil.buildExtraInfo), unless the broker set it (retry messages).
type popClient struct {
	rc           *rawClient
	group, topic string
	brokerName   string
}

func newPopClient(t *testing.T, b *Broker, group, topic string) *popClient {
	return &popClient{rc: dial(t, b.Addr()), group: group, topic: topic, brokerName: b.Name()}
}

// popOpts are the PopMessageRequestHeader fields a test varies.
type popOpts struct {
	queue     int32 // -1: every queue
	max       int32
	invisible time.Duration
	poll      time.Duration
	order     bool
	attemptID string
	exp       string
}

// popHeader is PopMessageRequestHeader as the Java client fills it (DefaultMQPushConsumerImpl.popMessage): the
// primitive fields always, expType TAG, order only when set.
func (pc *popClient) popHeader(o popOpts) map[string]string {
	if o.max == 0 {
		o.max = 32
	}
	if o.exp == "" {
		o.exp = "*"
	}
	h := map[string]string{
		"consumerGroup": pc.group,
		"topic":         pc.topic,
		"queueId":       strconv.Itoa(int(o.queue)),
		"maxMsgNums":    strconv.Itoa(int(o.max)),
		"invisibleTime": strconv.FormatInt(o.invisible.Milliseconds(), 10),
		"pollTime":      strconv.FormatInt(o.poll.Milliseconds(), 10),
		"bornTime":      strconv.FormatInt(time.Now().UnixMilli(), 10),
		"initMode":      "0", // ConsumeInitMode.MIN
		"expType":       "TAG",
		"exp":           o.exp,
	}
	if o.order {
		h["order"] = "true"
	}
	if o.attemptID != "" {
		h["attemptId"] = o.attemptID
	}
	return h
}

// popResult is what MQClientAPIImpl.processPopResponse makes of an answer: the status code, the header
// (PopMessageResponseHeader) and the messages, each with its receipt handle in POP_CK.
type popResult struct {
	resp                  *remoting.Command
	popTime, invisible    int64
	reviveQid             int32
	restNum               int64
	startInfo, offsetInfo string
	orderInfo             string
	msgs                  []*message.Ext
	handles               []message.ExtraInfo // parsed POP_CK of msgs
	bodyText              []string            // bodies of msgs, for comparisons
	reconsume             []int32             // reconsumeTimes of msgs, after orderCountInfo
}

func (pc *popClient) pop(o popOpts) *popResult {
	pc.rc.t.Helper()
	for {
		resp := pc.rc.call(remoting.PopMessage, pc.popHeader(o), nil)
		// A pop the broker sees more than 500 ms after its bornTime (plus pollTime) is refused; only a stalled
		// test machine gets that here, and a client would pop again.
		if resp.Code == remoting.PollingTimeout && strings.Contains(resp.Remark, "timeout too much") {
			pc.rc.t.Logf("pop refused as too old (%q): the machine stalled; popping again", resp.Remark)
			continue
		}
		return pc.result(resp, o.order)
	}
}

func (pc *popClient) result(resp *remoting.Command, order bool) *popResult {
	t := pc.rc.t
	t.Helper()
	r := &popResult{resp: resp}
	num := func(name string) int64 {
		t.Helper()
		v, err := strconv.ParseInt(resp.Ext(name), 10, 64)
		if err != nil {
			t.Fatalf("pop answer %d %q: header %s = %q", resp.Code, resp.Remark, name, resp.Ext(name))
		}
		return v
	}
	if resp.Code != remoting.Success {
		return r
	}
	// @CFNotNull fields: decodeCommandCustomHeader fails without them.
	r.popTime, r.invisible, r.reviveQid, r.restNum = num("popTime"), num("invisibleTime"), int32(num("reviveQid")), num("restNum")
	r.startInfo, r.offsetInfo, r.orderInfo = resp.Ext("startOffsetInfo"), resp.Ext("msgOffsetInfo"), resp.Ext("orderCountInfo")
	msgs, err := message.DecodeExts(resp.Body)
	if err != nil {
		t.Fatalf("pop body: %v", err)
	}
	handles, err := message.SetReceiptHandles(msgs, message.PopAnswer{PopTime: r.popTime, InvisibleTime: r.invisible,
		ReviveQid: r.reviveQid, RestNum: r.restNum, StartOffsetInfo: r.startInfo, MsgOffsetInfo: r.offsetInfo,
		OrderCountInfo: r.orderInfo}, pc.brokerName, order)
	if err != nil {
		t.Fatal(err)
	}
	r.handles = handles
	for _, m := range msgs {
		r.msgs = append(r.msgs, m)
		r.bodyText = append(r.bodyText, string(m.Body))
		r.reconsume = append(r.reconsume, m.ReconsumeTimes)
	}
	return r
}

// ackHeader is AckMessageRequestHeader as DefaultMQPushConsumerImpl.ackAsync fills it: the real topic of the
// handle (the pop retry topic for a retry message), its queue and the message's queue offset.
func (pc *popClient) ackHeader(handle string) map[string]string {
	pc.rc.t.Helper()
	h, err := message.ParseExtraInfo(handle)
	if err != nil {
		pc.rc.t.Fatal(err)
	}
	return map[string]string{"consumerGroup": pc.group, "topic": h.TopicType.RealTopic(pc.topic, pc.group),
		"queueId": strconv.Itoa(int(h.QueueID)), "extraInfo": handle, "offset": strconv.FormatInt(h.QueueOffset, 10)}
}

func (pc *popClient) ack(handle string) *remoting.Command {
	pc.rc.t.Helper()
	return pc.rc.call(remoting.AckMessage, pc.ackHeader(handle), nil)
}

// changeInvisible sends ChangeInvisibleTimeRequestHeader and builds the new handle from
// ChangeInvisibleTimeResponseHeader as MQClientAPIImpl.changeInvisibleTimeAsync does.
func (pc *popClient) changeInvisible(handle string, d time.Duration) (*remoting.Command, string) {
	pc.rc.t.Helper()
	req := pc.ackHeader(handle)
	req["invisibleTime"] = strconv.FormatInt(d.Milliseconds(), 10)
	resp := pc.rc.call(remoting.ChangeMessageInvisibleTime, req, nil)
	if resp.Code != remoting.Success {
		return resp, ""
	}
	num := func(name string) int64 {
		v, err := strconv.ParseInt(resp.Ext(name), 10, 64)
		if err != nil {
			pc.rc.t.Fatalf("change invisible time answer: header %s = %q", name, resp.Ext(name))
		}
		return v
	}
	offset, _ := strconv.ParseInt(req["offset"], 10, 64)
	queue, _ := strconv.Atoi(req["queueId"])
	newHandle := message.ExtraInfo{CkQueueOffset: offset, PopTime: num("popTime"), InvisibleTime: num("invisibleTime"),
		ReviveQid: int32(num("reviveQid")), TopicType: message.TopicTypeOf(req["topic"]), BrokerName: pc.brokerName,
		QueueID: int32(queue), QueueOffset: offset, HasQueueOffset: true}.String()
	return resp, newHandle
}

// batchAckJSONOut is BatchAck as fastjson writes it (its @JSONField names; the bit set base64, as
// BitSetSerializerDeserializer writes BitSet.toByteArray with writeByteArray).
type batchAckJSONOut struct {
	C  string `json:"c"`
	T  string `json:"t"`
	R  string `json:"r"`
	SO int64  `json:"so"`
	Q  int32  `json:"q"`
	RQ int32  `json:"rq"`
	PT int64  `json:"pt"`
	IT int64  `json:"it"`
	B  string `json:"b"`
}

// batchAckBody is MQClientAPIImpl.batchAckMessageAsync: handles merged per mark, queue, start offset and pop time,
// each message a bit at its offset from the start.
func (pc *popClient) batchAckBody(handles []string) []byte {
	pc.rc.t.Helper()
	var order []string
	acks := map[string]*batchAckJSONOut{}
	bits := map[string][]byte{}
	brokerName := ""
	for _, s := range handles {
		h, err := message.ParseExtraInfo(s)
		if err != nil {
			pc.rc.t.Fatal(err)
		}
		if brokerName == "" {
			brokerName = h.BrokerName
		}
		key := h.TopicType.String() + "@" + strconv.Itoa(int(h.QueueID)) + "@" + strconv.FormatInt(h.CkQueueOffset, 10) + "@" + strconv.FormatInt(h.PopTime, 10)
		if acks[key] == nil {
			order = append(order, key)
			acks[key] = &batchAckJSONOut{C: pc.group, T: pc.topic, R: h.TopicType.String(), SO: h.CkQueueOffset,
				Q: h.QueueID, RQ: h.ReviveQid, PT: h.PopTime, IT: h.InvisibleTime}
		}
		i := int(h.QueueOffset - h.CkQueueOffset)
		for len(bits[key]) <= i/8 {
			bits[key] = append(bits[key], 0)
		}
		bits[key][i/8] |= 1 << (i % 8)
	}
	body := struct {
		BrokerName string             `json:"brokerName"`
		Acks       []*batchAckJSONOut `json:"acks"`
	}{BrokerName: brokerName}
	for _, k := range order {
		acks[k].B = base64.StdEncoding.EncodeToString(bits[k])
		body.Acks = append(body.Acks, acks[k])
	}
	out, err := json.Marshal(body)
	if err != nil {
		pc.rc.t.Fatal(err)
	}
	return out
}

func (pc *popClient) batchAck(handles []string) *remoting.Command {
	pc.rc.t.Helper()
	return pc.rc.call(remoting.BatchAckMessage, nil, pc.batchAckBody(handles))
}

// sendAt sends a message (SendMessageRequestHeaderV2) with a born timestamp the test sets.
func sendAt(rc *rawClient, topic string, queue int, body string, born int64, props map[string]string) *remoting.Command {
	rc.t.Helper()
	return rc.call(remoting.SendMessageV2, map[string]string{"a": "pg", "b": topic, "c": "TBW102", "d": "4",
		"e": strconv.Itoa(queue), "f": "0", "g": strconv.FormatInt(born, 10), "h": "0",
		"i": message.EncodeProperties(props), "j": "0", "k": "false", "m": "false"}, []byte(body))
}

func sendN(t *testing.T, rc *rawClient, topic string, queue int, bodies ...string) {
	t.Helper()
	for _, body := range bodies {
		if r := sendV2(rc, topic, queue, body, map[string]string{"TAGS": "TagA", "UNIQ_KEY": "key-" + body}); r.Code != remoting.Success {
			t.Fatalf("send %s: %d %s", body, r.Code, r.Remark)
		}
	}
}

func handlesOf(r *popResult) []string {
	out := make([]string, len(r.msgs))
	for i, m := range r.msgs {
		out[i] = m.Properties[message.PropertyPopCK]
	}
	return out
}

// expectNothing pops once without polling and expects no message (POLLING_TIMEOUT, Java's answer to a pop that
// is not held).
func expectNothing(t *testing.T, pc *popClient, o popOpts, why string) {
	t.Helper()
	o.poll = 0
	if r := pc.pop(o); r.resp.Code != remoting.PollingTimeout {
		t.Fatalf("%s: pop answered %d %q with %v", why, r.resp.Code, r.resp.Remark, r.bodyText)
	}
}

// popWait long-polls until a pop finds messages or d is over.
func popWait(t *testing.T, pc *popClient, o popOpts, d time.Duration) *popResult {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		o.poll = min(time.Until(deadline), 2*time.Second)
		if o.poll < 100*time.Millisecond {
			t.Fatalf("no message within %v", d)
		}
		r := pc.pop(o)
		if r.resp.Code == remoting.Success {
			return r
		}
		if r.resp.Code != remoting.PollingTimeout {
			t.Fatalf("pop: %d %q", r.resp.Code, r.resp.Remark)
		}
	}
}

// Pop then ack: the answer carries PopMessageResponseHeader and the messages in queue order, each handle names its
// checkpoint; acked messages are not redelivered once their invisible time is over.
func TestPopThenAck(t *testing.T) {
	b := startBroker(t, Options{Topics: []remoting.TopicConfig{topicConfig("T", 1)}})
	pc := newPopClient(t, b, "g", "T")
	sendN(t, pc.rc, "T", 0, "m0", "m1", "m2")
	const inv = 200 * time.Millisecond
	before := time.Now().UnixMilli()
	r := pc.pop(popOpts{queue: -1, invisible: inv})
	if r.resp.Code != remoting.Success || r.resp.Remark != "FOUND" {
		t.Fatalf("pop: %d %q", r.resp.Code, r.resp.Remark)
	}
	if !slices.Equal(r.bodyText, []string{"m0", "m1", "m2"}) {
		t.Fatalf("popped %v", r.bodyText)
	}
	if r.popTime < before || r.popTime > time.Now().UnixMilli() || r.invisible != inv.Milliseconds() ||
		r.reviveQid < 0 || r.reviveQid >= popReviveQueueNum || r.restNum != 0 {
		t.Fatalf("header %v", r.resp.ExtFields)
	}
	if r.startInfo != "0 0 0" || r.offsetInfo != "0 0 0,1,2" || r.orderInfo != "" {
		t.Fatalf("info: start %q, offsets %q, order %q", r.startInfo, r.offsetInfo, r.orderInfo)
	}
	for i, h := range r.handles {
		want := message.ExtraInfo{CkQueueOffset: 0, PopTime: r.popTime, InvisibleTime: 200, ReviveQid: r.reviveQid,
			TopicType: message.TopicNormal, BrokerName: "broker-a", QueueID: 0, QueueOffset: int64(i), HasQueueOffset: true}
		if h != want {
			t.Fatalf("handle %d: %+v, want %+v", i, h, want)
		}
	}
	// The queue is popped to its end: nothing more while the messages are invisible.
	expectNothing(t, pc, popOpts{queue: -1, invisible: inv}, "pop while the messages are invisible")
	for i, h := range handlesOf(r) {
		if a := pc.ack(h); a.Code != remoting.Success {
			t.Fatalf("ack %d: %d %q", i, a.Code, a.Remark)
		}
	}
	// A second ack of the same handle is answered as Java answers it: the revive log drops it.
	if a := pc.ack(handlesOf(r)[0]); a.Code != remoting.Success {
		t.Fatalf("second ack: %d %q", a.Code, a.Remark)
	}
	time.Sleep(inv + 100*time.Millisecond)
	expectNothing(t, pc, popOpts{queue: -1, invisible: inv}, "pop after the acked messages' invisible time")
	if _, ok := b.store.topic(popRetryTopic("T", "g")); ok {
		t.Fatal("acked messages were revived into the pop retry topic")
	}
	// Every checkpoint finished: the consume offset is past the messages.
	if off, _ := b.store.consumerOffset(offsetKey{"g", "T", 0}); off != 3 {
		t.Fatalf("consume offset %d, want 3", off)
	}
}

// A popped message that is not acked comes again once its invisible time is over, from the pop retry topic,
// with reconsumeTimes+1, its first pop time and a handle of the retry topic set by the broker. Its bytes are
// the bytes Java's broker writes (testdata/pop-retry-message.hex), but for the times and addresses of this run.
func TestPopRedeliveryAfterInvisibleTime(t *testing.T) {
	b := startBroker(t, Options{Topics: []remoting.TopicConfig{topicConfig("PopTopic", 1)}})
	pc := newPopClient(t, b, "pop-group", "PopTopic")
	if r := sendAt(pc.rc, "PopTopic", 0, "Hello", 1700000000000, map[string]string{"TAGS": "TagA", "UNIQ_KEY": "7F0000010001"}); r.Code != remoting.Success {
		t.Fatalf("send: %d %s", r.Code, r.Remark)
	}
	const inv = 300 * time.Millisecond
	first := pc.pop(popOpts{queue: -1, invisible: inv})
	if first.resp.Code != remoting.Success || len(first.msgs) != 1 || first.reconsume[0] != 0 {
		t.Fatalf("first pop: %d %v", first.resp.Code, first.bodyText)
	}
	expectNothing(t, pc, popOpts{queue: -1, invisible: inv}, "pop while invisible")

	// A long-polling pop is answered when the message is revived.
	start := time.Now()
	again := popWait(t, pc, popOpts{queue: -1, invisible: inv}, 3*time.Second)
	waited := time.Since(start)
	if visibleAt := time.UnixMilli(first.popTime + inv.Milliseconds()); again.popTime < visibleAt.UnixMilli() {
		t.Fatalf("redelivered at %d, before the invisible time ended at %d", again.popTime, visibleAt.UnixMilli())
	}
	if waited > 2*time.Second {
		t.Fatalf("redelivery took %v", waited)
	}
	if len(again.msgs) != 1 {
		t.Fatalf("redelivered %v", again.bodyText)
	}
	m, h := again.msgs[0], again.handles[0]
	if string(m.Body) != "Hello" || m.Topic != "PopTopic" || m.ReconsumeTimes != 1 ||
		m.Properties[message.PropertyFirstPopTime] != strconv.FormatInt(first.popTime, 10) || m.Properties["UNIQ_KEY"] != "7F0000010001" {
		t.Fatalf("redelivered message: topic %s, reconsume %d, props %v", m.Topic, m.ReconsumeTimes, m.Properties)
	}
	wantH := message.ExtraInfo{CkQueueOffset: 0, PopTime: again.popTime, InvisibleTime: inv.Milliseconds(), ReviveQid: again.reviveQid,
		TopicType: message.TopicRetryV1, BrokerName: "broker-a", QueueID: 0, QueueOffset: 0, HasQueueOffset: true}
	if h != wantH {
		t.Fatalf("retry handle %+v, want %+v", h, wantH)
	}
	if again.startInfo != "1 0 0" || again.offsetInfo != "1 0 0" {
		t.Fatalf("retry info: start %q, offsets %q", again.startInfo, again.offsetInfo)
	}
	checkRetryFixture(t, b, again.resp.Body, first.popTime, again.popTime, again.reviveQid)

	// Not acked either, the retry message comes once more, revived within the retry topic: reconsumeTimes 2, the
	// first pop time kept, at the retry queue's next offset.
	third := popWait(t, pc, popOpts{queue: -1, invisible: inv}, 3*time.Second)
	if len(third.msgs) != 1 || third.reconsume[0] != 2 || third.handles[0].TopicType != message.TopicRetryV1 ||
		third.handles[0].QueueOffset != 1 || third.handles[0].CkQueueOffset != 1 ||
		third.msgs[0].Properties[message.PropertyFirstPopTime] != strconv.FormatInt(first.popTime, 10) {
		t.Fatalf("second redelivery: %v, reconsume %v, handles %+v, props %v", third.bodyText, third.reconsume, third.handles, third.msgs[0].Properties)
	}
	// The retry message acks by its handle (the retry topic's queue): it does not come again.
	if a := pc.ack(handlesOf(third)[0]); a.Code != remoting.Success {
		t.Fatalf("ack of the retry message: %d %q", a.Code, a.Remark)
	}
	time.Sleep(inv + 100*time.Millisecond)
	expectNothing(t, pc, popOpts{queue: -1, invisible: inv}, "pop after the retry message was acked")
}

// checkRetryFixture compares a popped retry message with the fixture byte for byte, after putting the fixture's
// values in the fields that depend on the run: the hosts (the broker's address), the store time, the pop times in
// 1ST_POP_TIME and POP_CK, and POP_CK's revive queue, each checked before it is replaced.
func checkRetryFixture(t *testing.T, b *Broker, body []byte, firstPop, pop int64, reviveQid int32) {
	t.Helper()
	want := hexfixture.Read(t, filepath.Join("testdata", "pop-retry-message.hex"))
	got := bytes.Clone(body)
	host := b.hostPort()
	var hostBytes [8]byte
	copy(hostBytes[:], host.Addr().AsSlice())
	binary.BigEndian.PutUint32(hostBytes[4:], uint32(host.Port()))
	fixtureHost := []byte{0x7f, 0x00, 0x00, 0x01, 0x00, 0x00, 0x2a, 0x9f} // 127.0.0.1:10911
	for _, at := range []int{48, 64} {                                    // BORNHOST, STOREHOSTADDRESS
		if len(got) < at+8 || !bytes.Equal(got[at:at+8], hostBytes[:]) {
			t.Fatalf("host at %d: % x, want the broker's %s", at, got[at:min(at+8, len(got))], host)
		}
		copy(got[at:], fixtureHost)
	}
	if st := int64(binary.BigEndian.Uint64(got[56:])); st < firstPop || st > pop { // STORETIMESTAMP: the revive
		t.Fatalf("store timestamp %d not between the pops %d and %d", st, firstPop, pop)
	}
	binary.BigEndian.PutUint64(got[56:], 1700000000700)
	replace := func(old, new string) {
		t.Helper()
		if bytes.Count(got, []byte(old)) != 1 || len(old) != len(new) {
			t.Fatalf("property %q not found once in the body", old)
		}
		got = bytes.Replace(got, []byte(old), []byte(new), 1)
	}
	replace("1ST_POP_TIME\x01"+strconv.FormatInt(firstPop, 10)+"\x02", "1ST_POP_TIME\x011700000000200\x02")
	replace("POP_CK\x010 "+strconv.FormatInt(pop, 10)+" 300 "+strconv.Itoa(int(reviveQid))+" 1 broker-a 0 0\x02",
		"POP_CK\x010 1700000000800 300 0 1 broker-a 0 0\x02")
	if !bytes.Equal(got, want) {
		t.Fatalf("popped retry message differs from the fixture:\n got % x\nwant % x", got, want)
	}
}

// Changing the invisible time of a popped message moves its redelivery: it does not come at the old time, does
// at the new one, and the handle built from the answer acks it.
func TestPopChangeInvisibleTime(t *testing.T) {
	b := startBroker(t, Options{Topics: []remoting.TopicConfig{topicConfig("T", 1)}})
	pc := newPopClient(t, b, "g", "T")
	sendN(t, pc.rc, "T", 0, "m0", "m1")
	const inv, longer = 200 * time.Millisecond, 600 * time.Millisecond
	r := pc.pop(popOpts{queue: 0, invisible: inv})
	if r.resp.Code != remoting.Success || len(r.msgs) != 2 {
		t.Fatalf("pop: %d %v", r.resp.Code, r.bodyText)
	}
	var newHandles []string
	for i, h := range handlesOf(r) {
		before := time.Now().UnixMilli()
		resp, nh := pc.changeInvisible(h, longer)
		if resp.Code != remoting.Success {
			t.Fatalf("change %d: %d %q", i, resp.Code, resp.Remark)
		}
		got, _ := message.ParseExtraInfo(nh)
		if got.PopTime < before || got.InvisibleTime != longer.Milliseconds() || got.ReviveQid != r.reviveQid ||
			got.CkQueueOffset != int64(i) || got.QueueOffset != int64(i) || got.TopicType != message.TopicNormal {
			t.Fatalf("new handle %q (answer %v)", nh, resp.ExtFields)
		}
		newHandles = append(newHandles, nh)
	}
	changedAt := time.Now()
	// The pop's checkpoint is done once every message of it has a new invisible time: the queue's consume offset
	// is past them.
	if off, _ := b.store.consumerOffset(offsetKey{"g", "T", 0}); off != 2 {
		t.Fatalf("consume offset %d after both messages' invisible times changed, want 2", off)
	}
	// Past the old invisible time: nothing comes.
	time.Sleep(time.Until(time.UnixMilli(r.popTime).Add(inv + 150*time.Millisecond)))
	expectNothing(t, pc, popOpts{queue: -1, invisible: inv}, "pop after the old invisible time")
	// m0 is acked by its new handle; m1 comes at the new time.
	if a := pc.ack(newHandles[0]); a.Code != remoting.Success {
		t.Fatalf("ack by the new handle: %d %q", a.Code, a.Remark)
	}
	again := popWait(t, pc, popOpts{queue: -1, invisible: 5 * time.Second}, 3*time.Second)
	if !slices.Equal(again.bodyText, []string{"m1"}) || again.reconsume[0] != 1 {
		t.Fatalf("redelivered %v (reconsume %v), want m1 once", again.bodyText, again.reconsume)
	}
	if elapsed := time.Since(changedAt); elapsed < longer-100*time.Millisecond {
		t.Fatalf("redelivered %v after the change, before the new invisible time %v", elapsed, longer)
	}
	// The old handle of m0 no longer counts, the new one was acked: m0 does not come.
	time.Sleep(100 * time.Millisecond)
	expectNothing(t, pc, popOpts{queue: -1, invisible: inv}, "pop after m0 was acked by its new handle")
}

// Changes of invisible time sent right after the pop, in its millisecond (as a loopback client often is), each
// find the pop's checkpoint: a new checkpoint of the message at the pop's start offset must not take its place.
func TestPopChangeInvisibleTimeAtOnce(t *testing.T) {
	b := startBroker(t, Options{Topics: []remoting.TopicConfig{topicConfig("T", 1)}})
	pc := newPopClient(t, b, "g", "T")
	for round := range 10 {
		sendN(t, pc.rc, "T", 0, "x"+strconv.Itoa(2*round), "x"+strconv.Itoa(2*round+1))
		r := pc.pop(popOpts{queue: 0, invisible: time.Minute})
		if r.resp.Code != remoting.Success || len(r.msgs) != 2 {
			t.Fatalf("round %d: pop %d %q %v", round, r.resp.Code, r.resp.Remark, r.bodyText)
		}
		var newHandles []string
		for _, h := range handlesOf(r) {
			resp, nh := pc.changeInvisible(h, time.Minute)
			if resp.Code != remoting.Success {
				t.Fatalf("round %d: change: %d %q", round, resp.Code, resp.Remark)
			}
			newHandles = append(newHandles, nh)
		}
		if newHandles[0] == handlesOf(r)[0] {
			t.Fatalf("round %d: the new handle is the old one: %q", round, newHandles[0])
		}
		if off, _ := b.store.consumerOffset(offsetKey{"g", "T", 0}); off != int64(2*round+2) {
			t.Fatalf("round %d (pop at %d, changed at %q): consume offset %d, want %d: a change missed the pop's checkpoint",
				round, r.popTime, newHandles, off, 2*round+2)
		}
		if a := pc.batchAck(newHandles); a.Code != remoting.Success {
			t.Fatalf("round %d: batch ack by the new handles: %d %q", round, a.Code, a.Remark)
		}
	}
	p := b.pops()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.cks) != 0 {
		t.Fatalf("%d checkpoints left after every message was acked by its new handle", len(p.cks))
	}
}

// BATCH_ACK_MESSAGE acks the messages of several queues at once; only the one left out comes again.
func TestPopBatchAck(t *testing.T) {
	b := startBroker(t, Options{Topics: []remoting.TopicConfig{topicConfig("T", 2)}})
	pc := newPopClient(t, b, "g", "T")
	sendN(t, pc.rc, "T", 0, "a0", "a1", "a2")
	sendN(t, pc.rc, "T", 1, "b0", "b1")
	const inv = 250 * time.Millisecond
	r := pc.pop(popOpts{queue: -1, invisible: inv})
	if r.resp.Code != remoting.Success || len(r.msgs) != 5 {
		t.Fatalf("pop: %d %v", r.resp.Code, r.bodyText)
	}
	var acks []string
	for i, m := range r.msgs {
		if string(m.Body) != "a1" {
			acks = append(acks, handlesOf(r)[i])
		}
	}
	body := pc.batchAckBody(acks)
	var parsed struct {
		Acks []map[string]any `json:"acks"`
	}
	if err := json.Unmarshal(body, &parsed); err != nil || len(parsed.Acks) != 2 {
		t.Fatalf("batch ack body %s: one BatchAck per queue expected", body)
	}
	if a := pc.batchAck(acks); a.Code != remoting.Success {
		t.Fatalf("batch ack: %d %q", a.Code, a.Remark)
	}
	again := popWait(t, pc, popOpts{queue: -1, invisible: 5 * time.Second}, 3*time.Second)
	if !slices.Equal(again.bodyText, []string{"a1"}) || again.reconsume[0] != 1 {
		t.Fatalf("redelivered %v, want only a1", again.bodyText)
	}
	// The retry message acks in a batch too (retry mark 1).
	if a := pc.batchAck(handlesOf(again)); a.Code != remoting.Success {
		t.Fatalf("batch ack of the retry message: %d %q", a.Code, a.Remark)
	}
	if off, _ := b.store.consumerOffset(offsetKey{"g", popRetryTopic("T", "g"), 0}); off != 1 {
		t.Fatalf("retry topic consume offset %d after the batch ack, want 1", off)
	}
	// An empty batch is NO_MESSAGE, as AckMessageProcessor answers it.
	if a := pc.rc.call(remoting.BatchAckMessage, nil, []byte(`{"acks":[]}`)); a.Code != responseNoMessage {
		t.Fatalf("empty batch ack: %d %q", a.Code, a.Remark)
	}
}

// Orderly pop: a queue is blocked while its popped messages are unacked and invisible; messages come in queue
// order; after the acks the next ones come; once the invisible time runs out the same messages come again, with
// their consume count; another queue is not blocked meanwhile.
func TestOrderlyPop(t *testing.T) {
	b := startBroker(t, Options{Topics: []remoting.TopicConfig{topicConfig("T", 2)}})
	pc := newPopClient(t, b, "g", "T")
	sendN(t, pc.rc, "T", 0, "m0", "m1", "m2", "m3", "m4")
	sendN(t, pc.rc, "T", 1, "q1-0")
	const inv = 300 * time.Millisecond
	o := popOpts{queue: 0, max: 2, invisible: inv, order: true}
	attempt := 0
	pop := func() *popResult {
		t.Helper()
		attempt++
		o.attemptID = "attempt-" + strconv.Itoa(attempt)
		return pc.pop(o)
	}
	r := pop()
	if r.resp.Code != remoting.Success || !slices.Equal(r.bodyText, []string{"m0", "m1"}) {
		t.Fatalf("first orderly pop: %d %v", r.resp.Code, r.bodyText)
	}
	if r.reviveQid != popOrderReviveQueue || r.orderInfo != "0 0 0" || !slices.Equal(r.reconsume, []int32{0, 0}) {
		t.Fatalf("orderly header %v", r.resp.ExtFields)
	}
	if r.restNum != 3 {
		t.Fatalf("restNum %d, want 3", r.restNum)
	}
	if got := pop(); got.resp.Code != remoting.PollingTimeout || got.resp.Ext("reviveQid") != "999" {
		t.Fatalf("pop of a blocked queue: %d %v %v", got.resp.Code, got.bodyText, got.resp.ExtFields)
	}
	// Another queue of the topic is not blocked.
	if q1 := pc.pop(popOpts{queue: 1, invisible: inv, order: true, attemptID: "other"}); q1.resp.Code != remoting.Success ||
		!slices.Equal(q1.bodyText, []string{"q1-0"}) {
		t.Fatalf("pop of queue 1: %d %v", q1.resp.Code, q1.bodyText)
	}
	// One ack is not enough: m1 is still invisible.
	if a := pc.ack(handlesOf(r)[0]); a.Code != remoting.Success {
		t.Fatalf("ack m0: %d %q", a.Code, a.Remark)
	}
	if got := pop(); got.resp.Code != remoting.PollingTimeout {
		t.Fatalf("pop with m1 unacked: %d %v", got.resp.Code, got.bodyText)
	}
	if a := pc.ack(handlesOf(r)[1]); a.Code != remoting.Success {
		t.Fatalf("ack m1: %d %q", a.Code, a.Remark)
	}
	r = pop()
	if r.resp.Code != remoting.Success || !slices.Equal(r.bodyText, []string{"m2", "m3"}) || !slices.Equal(r.reconsume, []int32{0, 0}) {
		t.Fatalf("pop after the acks: %d %v %v", r.resp.Code, r.bodyText, r.reconsume)
	}
	// Not acked: once invisible time is over the same messages come again, counted. A long poll is answered then.
	start := time.Now()
	attempt++
	o.attemptID = "attempt-" + strconv.Itoa(attempt)
	again := popWait(t, pc, o, 3*time.Second)
	if !slices.Equal(again.bodyText, []string{"m2", "m3"}) || !slices.Equal(again.reconsume, []int32{1, 1}) {
		t.Fatalf("orderly redelivery %v, reconsume %v (orderCountInfo %q)", again.bodyText, again.reconsume, again.orderInfo)
	}
	if again.orderInfo != "0 qo0%2 1;0 qo0%3 1;0 0 1" {
		t.Fatalf("orderCountInfo %q", again.orderInfo)
	}
	if elapsed := time.Since(start); elapsed < inv-150*time.Millisecond || elapsed > 2*time.Second {
		t.Fatalf("orderly redelivery after %v, invisible time %v", elapsed, inv)
	}
	// The old handles are of an older pop: their acks change nothing; the new ones move the queue on.
	for _, h := range handlesOf(r) {
		if a := pc.ack(h); a.Code != remoting.Success {
			t.Fatalf("ack by an old handle: %d %q", a.Code, a.Remark)
		}
	}
	if got := pop(); got.resp.Code != remoting.PollingTimeout {
		t.Fatalf("pop after acks of older handles: %d %v", got.resp.Code, got.bodyText)
	}
	if a := pc.batchAck(handlesOf(again)); a.Code != remoting.Success {
		t.Fatalf("batch ack of the orderly messages: %d %q", a.Code, a.Remark)
	}
	r = pop()
	if r.resp.Code != remoting.Success || !slices.Equal(r.bodyText, []string{"m4"}) {
		t.Fatalf("pop after the redelivered messages were acked: %d %v", r.resp.Code, r.bodyText)
	}
	// Changing the invisible time of an orderly message keeps its queue blocked past the old time.
	resp, nh := pc.changeInvisible(handlesOf(r)[0], 2*time.Second)
	if resp.Code != remoting.Success || resp.Ext("reviveQid") != "999" || resp.Ext("popTime") != strconv.FormatInt(r.popTime, 10) {
		t.Fatalf("orderly change: %d %v", resp.Code, resp.ExtFields)
	}
	time.Sleep(time.Until(time.UnixMilli(r.popTime).Add(inv + 100*time.Millisecond)))
	if got := pop(); got.resp.Code != remoting.PollingTimeout {
		t.Fatalf("pop past the old invisible time of a changed orderly message: %d %v", got.resp.Code, got.bodyText)
	}
	if a := pc.ack(nh); a.Code != remoting.Success {
		t.Fatalf("ack by the changed orderly handle: %d %q", a.Code, a.Remark)
	}
	if off, _ := b.store.consumerOffset(offsetKey{"g", "T", 0}); off != 5 {
		t.Fatalf("orderly consume offset %d, want 5", off)
	}
}

// A pop with a poll time on an empty queue is held and answered when a message arrives; with nothing arriving
// it is answered POLLING_TIMEOUT when the poll time is over.
func TestPopLongPolling(t *testing.T) {
	b := startBroker(t, Options{Topics: []remoting.TopicConfig{topicConfig("T", 2)}})
	pc := newPopClient(t, b, "g", "T")
	held := pc.rc.send(remoting.PopMessage, pc.popHeader(popOpts{queue: -1, invisible: time.Second, poll: 3 * time.Second}), nil)
	select {
	case r := <-held:
		t.Fatalf("pop of an empty topic answered at once: %d %q", r.Code, r.Remark)
	case <-time.After(100 * time.Millisecond):
	}
	sent := time.Now()
	sendN(t, dial(t, b.Addr()), "T", 1, "late")
	select {
	case resp := <-held:
		r := pc.result(resp, false)
		if resp.Code != remoting.Success || !slices.Equal(r.bodyText, []string{"late"}) || r.startInfo != "0 1 0" {
			t.Fatalf("held pop: %d %q %v", resp.Code, resp.Remark, r.bodyText)
		}
		if d := time.Since(sent); d > time.Second {
			t.Fatalf("held pop answered %v after the message arrived", d)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the held pop was not answered when a message arrived")
	}
	start := time.Now()
	r := pc.pop(popOpts{queue: -1, invisible: time.Second, poll: 300 * time.Millisecond})
	if r.resp.Code != remoting.PollingTimeout || time.Since(start) < 200*time.Millisecond {
		t.Fatalf("pop with nothing to find: %d after %v", r.resp.Code, time.Since(start))
	}
	// A pop born too long ago (bornTime + pollTime more than 500 ms in the past) is refused.
	stale := pc.popHeader(popOpts{queue: -1, invisible: time.Second})
	stale["bornTime"] = strconv.FormatInt(time.Now().Add(-time.Second).UnixMilli(), 10)
	if r := pc.rc.call(remoting.PopMessage, stale, nil); r.Code != remoting.PollingTimeout || !strings.Contains(r.Remark, "timeout too much") {
		t.Fatalf("stale pop: %d %q", r.Code, r.Remark)
	}
}

// Malformed Pop, ack and change requests get a clear error answer and the connection keeps working.
func TestPopMalformedRequests(t *testing.T) {
	b := startBroker(t, Options{Topics: []remoting.TopicConfig{topicConfig("T", 1)}})
	pc := newPopClient(t, b, "g", "T")
	sendN(t, pc.rc, "T", 0, "m0")
	valid := func() map[string]string { return pc.popHeader(popOpts{queue: -1, invisible: time.Second}) }
	with := func(h map[string]string, k, v string) map[string]string {
		if v == "\x00delete" {
			delete(h, k)
		} else {
			h[k] = v
		}
		return h
	}
	cases := []struct {
		name   string
		code   int32
		ext    map[string]string
		body   []byte
		status int32
		remark string
	}{
		{"pop without group", remoting.PopMessage, with(valid(), "consumerGroup", "\x00delete"), nil, remoting.SystemError, "the custom field <consumerGroup> is null"},
		{"pop with a bad queue id", remoting.PopMessage, with(valid(), "queueId", "zero"), nil, remoting.SystemError, "queueId"},
		{"pop with a bad invisible time", remoting.PopMessage, with(valid(), "invisibleTime", "1s"), nil, remoting.SystemError, "invisibleTime"},
		{"pop of too many", remoting.PopMessage, with(valid(), "maxMsgNums", "33"), nil, remoting.InvalidParameter, "greater than 32"},
		{"pop of an unknown topic", remoting.PopMessage, with(valid(), "topic", "nope"), nil, remoting.TopicNotExist, "topic[nope] not exist"},
		{"pop of a queue beyond the topic", remoting.PopMessage, with(valid(), "queueId", "4"), nil, remoting.InvalidParameter, "queueId[4] is illegal"},
		{"pop with SQL92", remoting.PopMessage, with(valid(), "expType", "SQL92"), nil, remoting.SubscriptionParseFailed, "subscription"},
		{"ack without handle", remoting.AckMessage, map[string]string{"consumerGroup": "g", "topic": "T", "queueId": "0", "offset": "0"}, nil, remoting.SystemError, "<extraInfo> is null"},
		{"ack with a bad handle", remoting.AckMessage, map[string]string{"consumerGroup": "g", "topic": "T", "queueId": "0", "offset": "0", "extraInfo": "0 x"}, nil, remoting.SystemError, "extraInfo"},
		{"ack with a bad topic mark", remoting.AckMessage, map[string]string{"consumerGroup": "g", "topic": "T", "queueId": "0", "offset": "0", "extraInfo": "0 1 2 3 7 broker-a 0 0"}, nil, remoting.SystemError, "extraInfo"},
		{"ack of a queue beyond the topic", remoting.AckMessage, map[string]string{"consumerGroup": "g", "topic": "T", "queueId": "9", "offset": "0", "extraInfo": "0 1 2 3 0 broker-a 9 0"}, nil, remoting.MessageIllegal, "queueId[9] is illegal"},
		{"ack of an offset beyond the queue", remoting.AckMessage, map[string]string{"consumerGroup": "g", "topic": "T", "queueId": "0", "offset": "7", "extraInfo": "0 1 2 3 0 broker-a 0 7"}, nil, responseNoMessage, "offset is illegal"},
		{"change without invisible time", remoting.ChangeMessageInvisibleTime, map[string]string{"consumerGroup": "g", "topic": "T", "queueId": "0", "offset": "0", "extraInfo": "0 1 2 3 0 broker-a 0 0"}, nil, remoting.SystemError, "<invisibleTime> is null"},
		{"change with a bad handle", remoting.ChangeMessageInvisibleTime, map[string]string{"consumerGroup": "g", "topic": "T", "queueId": "0", "offset": "0", "extraInfo": "", "invisibleTime": "1000"}, nil, remoting.SystemError, "extraInfo"},
		{"batch ack that is no JSON", remoting.BatchAckMessage, nil, []byte("{acks:"), remoting.SystemError, "batch ack body"},
		{"batch ack with a bad bit set", remoting.BatchAckMessage, nil, []byte(`{"acks":[{"c":"g","t":"T","r":"0","b":"!!"}]}`), remoting.SystemError, "base64"},
		{"batch ack with a bad retry mark", remoting.BatchAckMessage, nil, []byte(`{"acks":[{"c":"g","t":"T","r":"x","b":"AQ=="}]}`), remoting.SystemError, "getRetry fail"},
		{"batch ack with a null ack", remoting.BatchAckMessage, nil, []byte(`{"acks":[null]}`), remoting.SystemError, "null ack"},
	}
	for _, c := range cases {
		r := pc.rc.call(c.code, c.ext, c.body)
		if r.Code != c.status || !strings.Contains(r.Remark, c.remark) {
			t.Errorf("%s: %d %q, want %d with %q", c.name, r.Code, r.Remark, c.status, c.remark)
		}
	}
	// The connection still works: a pop finds the message and it acks.
	r := pc.pop(popOpts{queue: -1, invisible: time.Second})
	if r.resp.Code != remoting.Success || !slices.Equal(r.bodyText, []string{"m0"}) {
		t.Fatalf("pop after the malformed requests: %d %q %v", r.resp.Code, r.resp.Remark, r.bodyText)
	}
	if a := pc.ack(handlesOf(r)[0]); a.Code != remoting.Success {
		t.Fatalf("ack after the malformed requests: %d %q", a.Code, a.Remark)
	}
}

// A pop filters by tag: messages of other tags are skipped and the consume offset moves past them once the
// matching ones are acked.
func TestPopFiltersByTag(t *testing.T) {
	b := startBroker(t, Options{Topics: []remoting.TopicConfig{topicConfig("T", 1)}})
	pc := newPopClient(t, b, "g", "T")
	for i, tag := range []string{"A", "B", "A"} {
		if r := sendV2(pc.rc, "T", 0, tag+strconv.Itoa(i), map[string]string{"TAGS": tag}); r.Code != remoting.Success {
			t.Fatalf("send: %d %s", r.Code, r.Remark)
		}
	}
	o := popOpts{queue: 0, invisible: time.Minute, exp: "B || C"}
	r := pc.pop(o)
	if r.resp.Code != remoting.Success || !slices.Equal(r.bodyText, []string{"B1"}) || r.offsetInfo != "0 0 1" || r.startInfo != "0 0 0" {
		t.Fatalf("filtered pop: %d %v %v", r.resp.Code, r.bodyText, r.resp.ExtFields)
	}
	expectNothing(t, pc, o, "pop with only other tags left")
	if a := pc.ack(handlesOf(r)[0]); a.Code != remoting.Success {
		t.Fatalf("ack: %d %q", a.Code, a.Remark)
	}
	if off, _ := b.store.consumerOffset(offsetKey{"g", "T", 0}); off != 3 {
		t.Fatalf("consume offset %d, want 3", off)
	}
	// A held pop wakes for a matching message, not for others.
	held := pc.rc.send(remoting.PopMessage, pc.popHeader(popOpts{queue: 0, invisible: time.Minute, poll: 3 * time.Second, exp: "C"}), nil)
	sendV2(dial(t, b.Addr()), "T", 0, "A3", map[string]string{"TAGS": "A"})
	select {
	case resp := <-held:
		t.Fatalf("held pop answered for another tag: %d %q", resp.Code, resp.Remark)
	case <-time.After(100 * time.Millisecond):
	}
	sendV2(dial(t, b.Addr()), "T", 0, "C4", map[string]string{"TAGS": "C"})
	select {
	case resp := <-held:
		if got := pc.result(resp, false); resp.Code != remoting.Success || !slices.Equal(got.bodyText, []string{"C4"}) {
			t.Fatalf("held filtered pop: %d %v", resp.Code, got.bodyText)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("held filtered pop not answered")
	}
}
