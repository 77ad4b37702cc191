package message

import (
	"bytes"
	"errors"
	"math"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

// The fixtures of testdata/stored-*.hex, as values.
var (
	fixtureIPv4 = &Ext{
		Message: Message{Topic: "TopicTest", Body: []byte("Hello"),
			Properties: map[string]string{"KEYS": "order-1", "TAGS": "TagA", "UNIQ_KEY": "0A0000010001"}},
		QueueID: 3, QueueOffset: 42, CommitLogOffset: 4096, BodyCRC: 0x77d18982,
		BornTimestamp: 1700000000000, BornHost: netip.MustParseAddrPort("192.168.0.10:54321"),
		StoreTimestamp: 1700000000123, StoreHost: netip.MustParseAddrPort("10.0.0.1:10911"),
	}
	fixtureIPv6 = &Ext{
		Message: Message{Topic: "T6", Flag: 1, Properties: map[string]string{"TAGS": "v6"}},
		QueueID: 7, CommitLogOffset: 150, SysFlag: StoreHostV6Flag | BornHostV6Flag | MultiTagsFlag,
		BornTimestamp: 1700000000000, BornHost: netip.MustParseAddrPort("[2001:db8::1]:40000"),
		StoreTimestamp: 1700000000456, StoreHost: netip.MustParseAddrPort("[fd00::10]:10911"),
		ReconsumeTimes: 2,
	}
	fixtureV2 = &Ext{
		Message: Message{Topic: "%RETRY%" + strings.Repeat("G", 64) + "+" + strings.Repeat("T", 64),
			Body: []byte("x"), Properties: map[string]string{"TAGS": "a"}},
		QueueOffset: 5, CommitLogOffset: 65536, BodyCRC: 0x0cdc1683,
		BornTimestamp: 1700000000000, BornHost: netip.MustParseAddrPort("127.0.0.1:54321"),
		StoreTimestamp: 1700000000123, StoreHost: netip.MustParseAddrPort("10.0.0.1:10911"),
		ReconsumeTimes: 1,
	}
)

var storedFixtures = []struct {
	file string
	want *Ext
}{
	{"stored-ipv4.hex", fixtureIPv4},
	{"stored-ipv6.hex", fixtureIPv6},
	{"stored-v2.hex", fixtureV2},
}

func TestStoredFixtures(t *testing.T) {
	var all []byte
	for _, fx := range storedFixtures {
		raw := readFixture(t, fx.file)
		all = append(all, raw...)
		got, n, err := DecodeExt(raw)
		if err != nil {
			t.Fatalf("%s: %v", fx.file, err)
		}
		if n != len(raw) || StoredSize(fx.want) != len(raw) {
			t.Errorf("%s: decoded %d bytes, StoredSize %d, fixture %d", fx.file, n, StoredSize(fx.want), len(raw))
		}
		if !reflect.DeepEqual(got, fx.want) {
			t.Errorf("%s: decoded\n%+v\nwant\n%+v", fx.file, got, fx.want)
		}
		enc, err := AppendExt([]byte("prefix"), fx.want)
		if err != nil {
			t.Fatalf("%s: %v", fx.file, err)
		}
		if !bytes.Equal(enc[6:], raw) || string(enc[:6]) != "prefix" {
			t.Errorf("%s: AppendExt wrote\n%x\nfixture\n%x", fx.file, enc[6:], raw)
		}
	}
	got, err := DecodeExts(all)
	if err != nil || len(got) != len(storedFixtures) {
		t.Fatalf("DecodeExts of the concatenation: %d messages, %v", len(got), err)
	}
	for i, fx := range storedFixtures {
		if !reflect.DeepEqual(got[i], fx.want) {
			t.Errorf("DecodeExts message %d differs from %s", i, fx.file)
		}
	}
	// A body that does not parse returns what came before it, as Java's decodes does, and says where it stopped.
	got, err = DecodeExts(append(all[:len(all):len(all)], 0, 0, 0))
	if len(got) != 3 || !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "message 3 at byte") {
		t.Errorf("trailing garbage: %d messages, %v", len(got), err)
	}
}

// The decoded body is the caller's: it does not alias the input.
func TestDecodeExtCopies(t *testing.T) {
	raw := readFixture(t, "stored-ipv4.hex")
	m, _, err := DecodeExt(raw)
	if err != nil {
		t.Fatal(err)
	}
	m.Body[0] = 'J'
	if !bytes.Contains(raw, []byte("Hello")) {
		t.Error("the decoded body aliases the input")
	}
	m.Properties["X"] = "y" // decoded properties are never a nil map
}

func TestBodyCRC(t *testing.T) {
	// UtilAll.crc32 masks CRC32's value with 0x7FFFFFFF: "Hello" is 0xf7d18982 before.
	if got := BodyCRC([]byte("Hello")); got != 0x77d18982 {
		t.Errorf("BodyCRC(Hello) = %#x", got)
	}
	if got := BodyCRC(nil); got != 0 {
		t.Errorf("BodyCRC(nil) = %#x", got)
	}
}

func TestAppendExtRoundTrips(t *testing.T) {
	cases := map[string]*Ext{
		"zero value": {},
		"born v4, store v6": {Message: Message{Topic: "t", Body: bytes.Repeat([]byte{0xff}, 300)},
			BornHost: netip.MustParseAddrPort("1.2.3.4:1"), StoreHost: netip.MustParseAddrPort("[::1]:65535"),
			QueueOffset: -1, CommitLogOffset: math.MaxInt64, SysFlag: CompressedFlag | CompressionZLIBType},
		"born v6, store v4": {Message: Message{Topic: strings.Repeat("t", 127)},
			BornHost: netip.MustParseAddrPort("[fe80::1]:2"), StoreHost: netip.MustParseAddrPort("9.9.9.9:0"),
			PreparedTransactionOffset: 77, SysFlag: TransactionPreparedType},
		"v2 topic of 32767 bytes": {Message: Message{Topic: strings.Repeat("t", math.MaxInt16)}},
		"value holding the name separator": {Message: Message{Topic: "t",
			Properties: map[string]string{"k": "a\x01b", "KEYS": "k1 k2"}}},
	}
	for name, m := range cases {
		enc, err := AppendExt(nil, m)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(enc) != StoredSize(m) {
			t.Errorf("%s: %d bytes, StoredSize %d", name, len(enc), StoredSize(m))
		}
		got, n, err := DecodeExt(enc)
		if err != nil || n != len(enc) {
			t.Fatalf("%s: %v (%d of %d bytes)", name, err, n, len(enc))
		}
		want := *m
		want.SysFlag &^= BornHostV6Flag | StoreHostV6Flag
		if !want.BornHost.Addr().Is4() && want.BornHost.IsValid() {
			want.SysFlag |= BornHostV6Flag
		}
		if !want.StoreHost.Addr().Is4() && want.StoreHost.IsValid() {
			want.SysFlag |= StoreHostV6Flag
		}
		if !want.BornHost.IsValid() {
			want.BornHost = netip.AddrPortFrom(netip.IPv4Unspecified(), 0)
		}
		if !want.StoreHost.IsValid() {
			want.StoreHost = netip.AddrPortFrom(netip.IPv4Unspecified(), 0)
		}
		if want.Properties == nil {
			want.Properties = map[string]string{}
		}
		if len(want.Body) == 0 {
			want.Body = nil
		}
		if !reflect.DeepEqual(got, &want) {
			t.Errorf("%s: round trip\n%+v\nwant\n%+v", name, got, &want)
		}
	}
}

// Java has an IPv4-mapped IPv6 address as an Inet4Address: stored as 4 bytes, without the V6 flag. A Go listener
// on a dual-stack socket reports IPv4 peers this way.
func TestAppendExtUnmapsHosts(t *testing.T) {
	m := *fixtureIPv4
	m.BornHost = netip.MustParseAddrPort("[::ffff:192.168.0.10]:54321")
	m.StoreHost = netip.MustParseAddrPort("[::ffff:10.0.0.1]:10911")
	m.SysFlag = BornHostV6Flag | StoreHostV6Flag // wrong bits are corrected, not trusted
	enc, err := AppendExt(nil, &m)
	if err != nil {
		t.Fatal(err)
	}
	if want := readFixture(t, "stored-ipv4.hex"); !bytes.Equal(enc, want) {
		t.Errorf("mapped hosts:\n%x\nwant\n%x", enc, want)
	}
	if got := OffsetMsgID(m.StoreHost, 4096); got != "0A00000100002A9F0000000000001000" {
		t.Errorf("OffsetMsgID of a mapped host = %s", got)
	}
}

func TestAppendExtTooLarge(t *testing.T) {
	cases := map[string]*Ext{
		"properties": {Message: Message{Properties: map[string]string{"k": strings.Repeat("v", math.MaxInt16-2)}}},
		"topic":      {Message: Message{Topic: strings.Repeat("t", math.MaxInt16+1)}},
	}
	for name, m := range cases {
		dst := []byte("keep")
		out, err := AppendExt(dst, m)
		if !errors.Is(err, ErrTooLarge) || string(out) != "keep" {
			t.Errorf("%s: %q, %v", name, out, err)
		}
	}
	// 32767 bytes of properties is the limit, and fits.
	m := &Ext{Message: Message{Properties: map[string]string{"k": strings.Repeat("v", math.MaxInt16-3)}}}
	if _, err := AppendExt(nil, m); err != nil {
		t.Errorf("properties of 32767 bytes: %v", err)
	}
}

// Every prefix of a valid body fails cleanly, and so does each kind of garbled field.
func TestDecodeExtErrors(t *testing.T) {
	raw := readFixture(t, "stored-ipv6.hex")
	for n := range len(raw) {
		if _, _, err := DecodeExt(raw[:n]); !errors.Is(err, ErrMalformed) {
			t.Fatalf("%d of %d bytes: %v", n, len(raw), err)
		}
	}
	v4 := readFixture(t, "stored-ipv4.hex")
	garble := func(base []byte, off int, b ...byte) []byte {
		out := bytes.Clone(base)
		copy(out[off:], b)
		return out
	}
	bodyLenAt := 4 + 4 + 4 + 4 + 4 + 8 + 8 + 4 + 8 + 8 + 8 + 8 + 4 + 8
	topicLenAt := bodyLenAt + 4 + 5
	cases := map[string][]byte{
		"unknown magic":              garble(v4, 4, 0xda, 0xa3, 0x20, 0xa8),
		"blank magic":                garble(v4, 4, 0xcb, 0xd4, 0x31, 0x94),
		"TOTALSIZE too small":        garble(v4, 0, 0, 0, 0, 0x95),
		"TOTALSIZE too large":        garble(v4, 0, 0, 0, 0, 0x97),
		"TOTALSIZE negative":         garble(v4, 0, 0x80, 0, 0, 0),
		"TOTALSIZE below minimum":    garble(v4, 0, 0, 0, 0, 10),
		"negative body length":       garble(v4, bodyLenAt, 0xff, 0xff, 0xff, 0xfb),
		"body length past the end":   garble(v4, bodyLenAt, 0, 0, 1, 0),
		"V1 topic length over 127":   garble(v4, topicLenAt, 0x89),
		"port over 65535":            garble(v4, 4+4+4+4+4+8+8+4+8+4, 0, 1, 0, 0),
		"negative port":              garble(v4, 4+4+4+4+4+8+8+4+8+4, 0xff, 0xff, 0xff, 0xff),
		"V6 flag on IPv4 hosts":      garble(v4, 4+4+4+4+4+8+8, 0, 0, 0, 0x10),
		"negative properties length": garble(v4, len(v4)-47, 0xff, 0xff),
	}
	for name, b := range cases {
		if _, _, err := DecodeExt(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestBatchFixture(t *testing.T) {
	raw := readFixture(t, "batch.hex")
	want := []Message{
		{Body: []byte("m1"), Properties: map[string]string{"KEYS": "k1", "WAIT": "true"}},
		{Flag: 7, Body: []byte("second"), Properties: map[string]string{}},
	}
	got, err := DecodeBatch(raw)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("decoded\n%+v\nwant\n%+v", got, want)
	}
	want[0].Topic = "ignored: the request header carries the topic"
	enc, err := EncodeBatch(want)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(enc, raw) {
		t.Errorf("EncodeBatch wrote\n%x\nfixture\n%x", enc, raw)
	}
	for n := range len(raw) {
		if _, err := DecodeBatch(raw[:n]); n > 0 && n != 42 && !errors.Is(err, ErrMalformed) {
			t.Fatalf("%d of %d bytes: %v", n, len(raw), err)
		}
	}
	// Java ignores MAGICCODE and BODYCRC of batch entries; so does this.
	garbled := bytes.Clone(raw)
	copy(garbled[4:], []byte{1, 2, 3, 4, 5, 6, 7, 8})
	if got, err := DecodeBatch(garbled); err != nil || len(got) != 2 {
		t.Errorf("garbled magic and crc: %v", err)
	}
	if got, err := DecodeBatch(nil); err != nil || got != nil {
		t.Errorf("empty batch: %v, %v", got, err)
	}
	big := []Message{{Properties: map[string]string{"k": strings.Repeat("v", math.MaxInt16)}}}
	if _, err := EncodeBatch(big); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized properties: %v", err)
	}
}

func TestProperties(t *testing.T) {
	// MessageDecoder.string2messageProperties, case by case.
	cases := []struct {
		in      string
		want    map[string]string
		dropped bool
	}{
		{"", map[string]string{}, false},
		{"a\x01b\x02", map[string]string{"a": "b"}, false},
		{"a\x01b", map[string]string{"a": "b"}, false},               // no final separator
		{"a\x01b\x01c\x02", map[string]string{"a": "b\x01c"}, false}, // the value keeps later name separators
		{"a\x011\x02a\x012\x02", map[string]string{"a": "2"}, false}, // the last one wins
		{"\x01b\x02", map[string]string{}, true},                     // no name
		{"a\x01\x02c\x01d\x02", map[string]string{"c": "d"}, true},   // no value
		{"ab\x02c\x01d\x02", map[string]string{"c": "d"}, true},      // no separator
		{"\x02\x02a\x01b\x02", map[string]string{"a": "b"}, true},    // empty segments
		{"\xff\x01\xfe\x02", map[string]string{"\xff": "\xfe"}, false},
	}
	for _, c := range cases {
		got, err := DecodeProperties(c.in)
		if !reflect.DeepEqual(got, c.want) || (err != nil) != c.dropped {
			t.Errorf("DecodeProperties(%q) = %q, %v; want %q, dropped %v", c.in, got, err, c.want, c.dropped)
		}
		if err != nil && !errors.Is(err, ErrMalformed) {
			t.Errorf("DecodeProperties(%q): %v does not wrap ErrMalformed", c.in, err)
		}
	}
	m := map[string]string{"UNIQ_KEY": "u", "KEYS": "k", "TAGS": "t", "DELAY": "3"}
	const want = "DELAY\x013\x02KEYS\x01k\x02TAGS\x01t\x02UNIQ_KEY\x01u\x02"
	for range 10 { // map order varies from run to run; the string must not
		if got := EncodeProperties(m); got != want {
			t.Fatalf("EncodeProperties = %q", got)
		}
	}
	if EncodeProperties(nil) != "" {
		t.Error("EncodeProperties(nil) is not empty")
	}
}

func TestOffsetMsgID(t *testing.T) {
	// MessageDecoder.createMessageId: address, port as a 4-byte int, commit log offset; UtilAll.bytes2string.
	cases := []struct {
		host   string
		offset int64
		id     string
	}{
		{"10.0.0.1:10911", 4096, "0A000001" + "00002A9F" + "0000000000001000"},
		{"[fd00::10]:10911", 123, "FD000000000000000000000000000010" + "00002A9F" + "000000000000007B"},
		{"255.255.255.255:65535", -1, "FFFFFFFF" + "0000FFFF" + "FFFFFFFFFFFFFFFF"},
	}
	for _, c := range cases {
		ap := netip.MustParseAddrPort(c.host)
		if got := OffsetMsgID(ap, c.offset); got != c.id {
			t.Errorf("OffsetMsgID(%s, %d) = %s, want %s", c.host, c.offset, got, c.id)
		}
		for _, id := range []string{c.id, strings.ToLower(c.id)} { // Java upper-cases before decoding
			gotHost, gotOffset, err := ParseOffsetMsgID(id)
			if err != nil || gotHost != ap || gotOffset != c.offset {
				t.Errorf("ParseOffsetMsgID(%s) = %v, %d, %v", id, gotHost, gotOffset, err)
			}
		}
	}
	if got := fixtureIPv6.OffsetMsgID(); got != "FD000000000000000000000000000010"+"00002A9F"+"0000000000000096" {
		t.Errorf("fixture's OffsetMsgID = %s", got)
	}
	// Java unmaps an IPv4-mapped address; so does ParseOffsetMsgID.
	ap, _, err := ParseOffsetMsgID("00000000000000000000FFFF0A000001" + "00002A9F" + "0000000000001000")
	if err != nil || ap != netip.MustParseAddrPort("10.0.0.1:10911") {
		t.Errorf("mapped id: %v, %v", ap, err)
	}
	for _, bad := range []string{"", "0A00000100002A9F000000000000100", "0A00000100002A9F0000000000001000A",
		"0A00000100002A9F000000000000100G", "0A00000100012A9F0000000000001000", "0A000001FFFFFFFF0000000000001000"} {
		if _, _, err := ParseOffsetMsgID(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseOffsetMsgID(%q): %v", bad, err)
		}
	}
}

func TestExtraInfo(t *testing.T) {
	// ExtraInfoUtil.buildExtraInfo, 8 arguments (the broker's, and the client's with startOffsetInfo) and 7.
	cases := []struct {
		s    string
		info ExtraInfo
	}{
		{"40 1700000000000 60000 3 0 broker-a 1 42", ExtraInfo{CkQueueOffset: 40, PopTime: 1700000000000,
			InvisibleTime: 60000, ReviveQid: 3, TopicType: TopicTypeOf("TopicTest"), BrokerName: "broker-a",
			QueueID: 1, QueueOffset: 42, HasQueueOffset: true}},
		{"40 1700000000000 60000 3 1 broker-a 1", ExtraInfo{CkQueueOffset: 40, PopTime: 1700000000000,
			InvisibleTime: 60000, ReviveQid: 3, TopicType: TopicTypeOf("%RETRY%GID_x_TopicTest"),
			BrokerName: "broker-a", QueueID: 1}},
		{"7 1700000000000 30000 999 2 broker-b 0 7", ExtraInfo{CkQueueOffset: 7, PopTime: 1700000000000,
			InvisibleTime: 30000, ReviveQid: PopOrderReviveQueue, TopicType: TopicTypeOf("%RETRY%GID_x+TopicTest"),
			BrokerName: "broker-b", QueueOffset: 7, HasQueueOffset: true}},
		{"-1 0 0 0 0  0", ExtraInfo{CkQueueOffset: -1}}, // an empty broker name survives
	}
	for _, c := range cases {
		if got := c.info.String(); got != c.s {
			t.Errorf("String() = %q, want %q", got, c.s)
		}
		got, err := ParseExtraInfo(c.s)
		if err != nil || got != c.info {
			t.Errorf("ParseExtraInfo(%q) = %+v, %v", c.s, got, err)
		}
	}
	// Java's split drops trailing empty fields, and its getters ignore fields past the ones they read (the
	// proxy's ReceiptHandle adds a commit log offset).
	lenient := map[string]ExtraInfo{
		"40 1 2 3 0 b 1 42   ":      {CkQueueOffset: 40, PopTime: 1, InvisibleTime: 2, ReviveQid: 3, BrokerName: "b", QueueID: 1, QueueOffset: 42, HasQueueOffset: true},
		"40 1 2 3 0 b 1 42 99999":   {CkQueueOffset: 40, PopTime: 1, InvisibleTime: 2, ReviveQid: 3, BrokerName: "b", QueueID: 1, QueueOffset: 42, HasQueueOffset: true},
		"+40 1 2 3 0 b 1 ":          {CkQueueOffset: 40, PopTime: 1, InvisibleTime: 2, ReviveQid: 3, BrokerName: "b", QueueID: 1},
		"040 -1 2 3 1 b 2147483647": {CkQueueOffset: 40, PopTime: -1, InvisibleTime: 2, ReviveQid: 3, TopicType: TopicRetryV1, BrokerName: "b", QueueID: math.MaxInt32},
	}
	for s, want := range lenient {
		if got, err := ParseExtraInfo(s); err != nil || got != want {
			t.Errorf("ParseExtraInfo(%q) = %+v, %v", s, got, err)
		}
	}
	for _, bad := range []string{"", "40 1 2 3 0 b", " 40 1 2 3 0 b 1", "40 1 2 3 3 b 1", "40 1 2 3 x b 1",
		"40 1 2 2147483648 0 b 1", "40 1 2 3 0 b 1 x", "40 1 2 3 0 b 1  5", "4 0x1 2 3 0 b 1", "40 1 2 3 0 b 1_0"} {
		if _, err := ParseExtraInfo(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseExtraInfo(%q): %v", bad, err)
		}
	}
}

func TestTopicType(t *testing.T) {
	cases := []struct {
		topic string
		want  TopicType
	}{
		{"TopicTest", TopicNormal},
		{"%RETRY%GID_x_TopicTest", TopicRetryV1},
		{"%RETRY%GID_x", TopicRetryV1}, // a push consumer's retry topic is marked V1 too
		{"%RETRY%GID_x+TopicTest", TopicRetryV2},
		{"%DLQ%GID_x", TopicNormal},
		{"Topic+Plus", TopicNormal},
	}
	for _, c := range cases {
		if got := TopicTypeOf(c.topic); got != c.want {
			t.Errorf("TopicTypeOf(%q) = %v, want %v", c.topic, got, c.want)
		}
	}
	if got := TopicRetryV1.RealTopic("T", "G"); got != "%RETRY%G_T" {
		t.Errorf("V1 real topic %q", got)
	}
	if got := TopicRetryV2.RealTopic("T", "G"); got != "%RETRY%G+T" {
		t.Errorf("V2 real topic %q", got)
	}
	if got := TopicNormal.RealTopic("T", "G"); got != "T" {
		t.Errorf("normal real topic %q", got)
	}
}

func TestInfoFixtures(t *testing.T) {
	// PopMessageProcessor builds these with ExtraInfoUtil.buildStartOffsetInfo, buildMsgOffsetInfo and (orderly
	// pops, ConsumerOrderInfoManager.update) buildQueueOffsetOrderCountInfo then buildQueueIdOrderCountInfo.
	starts := []StartOffset{{TopicNormal, 1, 40}, {TopicRetryV1, 1, 7}, {TopicRetryV2, 0, 0}}
	const startInfo = "0 1 40;1 1 7;2 0 0"
	if got := BuildStartOffsetInfo(starts); got != startInfo {
		t.Errorf("BuildStartOffsetInfo = %q", got)
	}
	if got, err := ParseStartOffsetInfo(startInfo); err != nil || !reflect.DeepEqual(got, starts) {
		t.Errorf("ParseStartOffsetInfo = %+v, %v", got, err)
	}
	if starts[1].Key() != "1@1" {
		t.Errorf("Key = %q", starts[1].Key())
	}

	offsets := []MsgOffsets{{TopicNormal, 1, []int64{40, 41, 42}}, {TopicRetryV1, 1, []int64{7}}}
	const offsetInfo = "0 1 40,41,42;1 1 7"
	if got := BuildMsgOffsetInfo(offsets); got != offsetInfo {
		t.Errorf("BuildMsgOffsetInfo = %q", got)
	}
	if got, err := ParseMsgOffsetInfo(offsetInfo); err != nil || !reflect.DeepEqual(got, offsets) {
		t.Errorf("ParseMsgOffsetInfo = %+v, %v", got, err)
	}

	counts := []OrderCount{{TopicNormal, 1, true, 40, 2}, {TopicNormal, 1, true, 41, 0}, {TopicNormal, 1, false, 0, 0}}
	const countInfo = "0 qo1%40 2;0 qo1%41 0;0 1 0"
	if got := BuildOrderCountInfo(counts); got != countInfo {
		t.Errorf("BuildOrderCountInfo = %q", got)
	}
	if got, err := ParseOrderCountInfo(countInfo); err != nil || !reflect.DeepEqual(got, counts) {
		t.Errorf("ParseOrderCountInfo = %+v, %v", got, err)
	}
	if counts[0].Key() != "0@qo1%40" || counts[2].Key() != "0@1" {
		t.Errorf("keys %q %q", counts[0].Key(), counts[2].Key())
	}

	// No info at all is Java's null; a trailing ';' or space is dropped by String.split.
	if got, err := ParseStartOffsetInfo(""); got != nil || err != nil {
		t.Errorf("empty: %v, %v", got, err)
	}
	if got, err := ParseMsgOffsetInfo("0 1 5,6, ;"); err != nil || !reflect.DeepEqual(got, []MsgOffsets{{0, 1, []int64{5, 6}}}) {
		t.Errorf("trailing separators: %+v, %v", got, err)
	}
	bad := map[string]func(string) error{
		"0 1 5;0 1 6":  func(s string) error { _, err := ParseStartOffsetInfo(s); return err }, // duplicate
		"0 1":          func(s string) error { _, err := ParseStartOffsetInfo(s); return err },
		"0 1 5 6":      func(s string) error { _, err := ParseStartOffsetInfo(s); return err },
		";0 1 5":       func(s string) error { _, err := ParseStartOffsetInfo(s); return err },
		"0 1 5;;1 1 5": func(s string) error { _, err := ParseStartOffsetInfo(s); return err },
		"3 1 5":        func(s string) error { _, err := ParseStartOffsetInfo(s); return err },
		"0 1 ":         func(s string) error { _, err := ParseMsgOffsetInfo(s); return err }, // Java's own empty list
		"0 1 ,":        func(s string) error { _, err := ParseMsgOffsetInfo(s); return err },
		"0 1 5,,6":     func(s string) error { _, err := ParseMsgOffsetInfo(s); return err },
		"0 qo1 2":      func(s string) error { _, err := ParseOrderCountInfo(s); return err },
		"0 qo1%x 2":    func(s string) error { _, err := ParseOrderCountInfo(s); return err },
		"0 1 2;0 1 3":  func(s string) error { _, err := ParseOrderCountInfo(s); return err },
	}
	for s, parse := range bad {
		if err := parse(s); !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: %v", s, err)
		}
	}
}
