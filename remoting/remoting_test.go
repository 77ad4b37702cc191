package remoting

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

func decodeFixture(t *testing.T, name string) (*Command, []byte) {
	t.Helper()
	raw := readFixture(t, name)
	cmd, err := NewReader(bytes.NewReader(raw), 0).Read()
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return cmd, raw
}

// TestFixturesRoundTrip proves the encoder writes byte for byte what the Java side writes, and the decoder reads it.
func TestFixturesRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		file string
		want Command
	}{
		{"route-legacy.frame", Command{Code: 0, Language: LanguageJava, Opaque: 42, Flag: FlagResponse}},
		{"route-standard.frame", Command{Code: 0, Language: LanguageJava, Opaque: 43, Flag: FlagResponse}},
		{"topic-not-exist.frame", Command{Code: TopicNotExist, Language: LanguageJava, Opaque: 44, Flag: FlagResponse,
			Remark: "No topic route info in name server for the topic: NoSuchTopic\nSee https://rocketmq.apache.org/docs/bestPractice/06FAQ for further details."}},
		{"all-topics-disabled.frame", Command{Code: SystemError, Language: LanguageJava, Opaque: 45, Flag: FlagResponse, Remark: "disable"}},
		{"request-route-json.frame", Command{Code: GetRouteInfoByTopic, Language: LanguageJava, Opaque: 46, Version: 401,
			ExtFields: map[string]string{"topic": "TopicTest", "acceptStandardJsonOnly": "true"}}},
		{"cluster-info-binary.frame", Command{Code: 0, Language: LanguageJava, Opaque: 47, Flag: FlagResponse, HeaderType: SerializeRocketMQ}},
		{"request-route-binary.frame", Command{Code: GetRouteInfoByTopic, Language: LanguageGo, Version: VersionClientGo, Opaque: 48,
			ExtFields: map[string]string{"topic": "TopicTest"}, HeaderType: SerializeRocketMQ}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			cmd, raw := decodeFixture(t, tc.file)
			body := cmd.Body
			cmd.Body = nil
			if !reflect.DeepEqual(*cmd, tc.want) {
				t.Fatalf("decoded\n %+v\nwant\n %+v", *cmd, tc.want)
			}
			cmd.Body = body
			again, err := Encode(cmd)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(again, raw) {
				t.Fatalf("re-encoded frame differs from the Java fixture\n got %q\nwant %q", again, raw)
			}
		})
	}
}

func TestRouteBodiesBothDialects(t *testing.T) {
	legacy, _ := decodeFixture(t, "route-legacy.frame")
	standard, _ := decodeFixture(t, "route-standard.frame")
	a, err := DecodeTopicRouteData(legacy.Body)
	if err != nil {
		t.Fatal(err)
	}
	b, err := DecodeTopicRouteData(standard.Body)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("legacy and standard bodies decode differently:\n%+v\n%+v", a, b)
	}
	if got := a.BrokerDatas[0].BrokerAddrs[1]; got != "192.168.0.11:10911" {
		t.Fatalf("slave address = %q", got)
	}
	if q := a.QueueDatas[1]; q.BrokerName != "broker-b" || q.Perm != PermRead || q.ReadQueueNums != 4 {
		t.Fatalf("queue data = %+v", q)
	}
	// The encoder reproduces both Java dialects exactly.
	if got := a.Encode(false); !bytes.Equal(got, legacy.Body) {
		t.Fatalf("legacy encoding\n got %s\nwant %s", got, legacy.Body)
	}
	if got := a.Encode(true); !bytes.Equal(got, standard.Body) {
		t.Fatalf("standard encoding\n got %s\nwant %s", got, standard.Body)
	}
}

func TestClusterInfoBinaryHeader(t *testing.T) {
	cmd, _ := decodeFixture(t, "cluster-info-binary.frame")
	ci, err := DecodeClusterInfo(cmd.Body)
	if err != nil {
		t.Fatal(err)
	}
	if got := ci.BrokerAddrTable["broker-a"].BrokerAddrs[0]; got != "192.168.0.10:10911" {
		t.Fatalf("master of broker-a = %q", got)
	}
	if !reflect.DeepEqual(ci.ClusterAddrTable["DefaultCluster"], []string{"broker-a"}) {
		t.Fatalf("cluster table = %v", ci.ClusterAddrTable)
	}
	if !bytes.Equal(ci.Encode(), cmd.Body) {
		t.Fatalf("cluster info encoding differs:\n%s\n%s", ci.Encode(), cmd.Body)
	}
}

func TestTolerantLegacyBodies(t *testing.T) {
	for name, body := range map[string]string{
		"4.8 topicSynFlag":    `{"queueDatas":[{"brokerName":"b","perm":6,"readQueueNums":2,"topicSynFlag":3,"writeQueueNums":2}],"brokerDatas":[]}`,
		"any order, no sort":  `{"queueDatas":[{"writeQueueNums":2,"topicSysFlag":3,"perm":6,"readQueueNums":2,"brokerName":"b"}],"brokerDatas":[{"cluster":"c","brokerName":"b","brokerAddrs":{ 0 : "a:1" }}]}`,
		"whitespace and bare": "{\n \"brokerDatas\" : [ { \"brokerAddrs\" : { 0 :\"a:1\", 2:\"c:1\" } , \"brokerName\":\"b\"} ],\"queueDatas\":[{\"brokerName\":\"b\",\"perm\":6,\"readQueueNums\":2,\"topicSysFlag\":3,\"writeQueueNums\":2}]}",
		"missing fields":      `{"queueDatas":[{"brokerName":"b","perm":6,"readQueueNums":2,"writeQueueNums":2,"topicSysFlag":3}]}`,
	} {
		t.Run(name, func(t *testing.T) {
			r, err := DecodeTopicRouteData([]byte(body))
			if err != nil {
				t.Fatal(err)
			}
			if len(r.QueueDatas) != 1 || r.QueueDatas[0].TopicSysFlag != 3 || r.QueueDatas[0].WriteQueueNums != 2 {
				t.Fatalf("queue data = %+v", r.QueueDatas)
			}
			if len(r.BrokerDatas) > 0 && r.BrokerDatas[0].BrokerAddrs[0] != "a:1" {
				t.Fatalf("broker data = %+v", r.BrokerDatas)
			}
		})
	}
}

func TestNormalizeLeavesStringsAlone(t *testing.T) {
	in := []byte(`{"a":"{0:\"x\", 1:2}",5:[{7:"q\\"},{}]}`)
	got := string(normalizeFastJSON(in))
	want := `{"a":"{0:\"x\", 1:2}","5":[{"7":"q\\"},{}]}`
	if got != want {
		t.Fatalf("normalize\n got %s\nwant %s", got, want)
	}
	std := []byte(`{"a":[1,2,{"b":null}]}`)
	if out := normalizeFastJSON(std); &out[0] != &std[0] {
		t.Fatal("standard JSON was copied")
	}
}

func TestStringEscaping(t *testing.T) {
	if got := string(appendJSONString(nil, "a\"\\/\n\x01é😀", false)); got != `"a\"\\/\n\u0001é😀"` {
		t.Fatalf("legacy escaping = %s", got)
	}
	if got := string(appendJSONString(nil, "é😀", true)); got != `"\u00e9\ud83d\ude00"` {
		t.Fatalf("browser-compatible escaping = %s", got)
	}
}

func TestReaderLimits(t *testing.T) {
	frame, err := Encode(&Command{Code: 105, Body: bytes.Repeat([]byte("x"), 1000)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewReader(bytes.NewReader(frame), 500).Read(); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("oversized frame: err = %v", err)
	}
	// A frame announcing 1 GiB with a 2 GiB limit but carrying 10 bytes fails without allocating the gigabyte.
	huge := append([]byte{0x40, 0, 0, 0}, make([]byte, 10)...)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, err := NewReader(bytes.NewReader(huge), 2<<30).Read(); !errors.Is(err, ErrMalformed) {
		t.Fatalf("truncated huge frame: err = %v", err)
	}
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 16<<20 {
		t.Fatalf("reading a truncated 1 GiB frame allocated %d bytes", grew)
	}
	for name, raw := range map[string][]byte{
		"length below 4":       {0, 0, 0, 2, 0, 0},
		"header beyond frame":  {0, 0, 0, 6, 0, 0, 0, 9, '{', '}'},
		"unknown serializer":   {0, 0, 0, 6, 7, 0, 0, 2, '{', '}'},
		"short binary header":  {0, 0, 0, 7, 1, 0, 0, 3, 0, 0, 0},
		"bad JSON header":      {0, 0, 0, 6, 0, 0, 0, 2, '{', '['},
		"cut in length prefix": {0, 0},
		"cut in frame":         {0, 0, 0, 9, 0, 0, 0, 2, '{', '}'},
	} {
		if _, err := NewReader(bytes.NewReader(raw), 0).Read(); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
	if _, err := NewReader(bytes.NewReader(nil), 0).Read(); err != io.EOF {
		t.Fatalf("empty stream: err = %v, want io.EOF", err)
	}
}

func TestBinaryHeaderRejectsWideCodes(t *testing.T) {
	_, err := Encode(&Command{Code: 200050, HeaderType: SerializeRocketMQ})
	if err == nil || !strings.Contains(err.Error(), "int16") {
		t.Fatalf("pop code in binary header: err = %v", err)
	}
	if _, err := Encode(&Command{Code: 200050}); err != nil {
		t.Fatalf("pop code in JSON header: %v", err)
	}
}

func TestLargeFrameStreams(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789"), 300_000) // 3 MB: grows with arriving data
	var buf bytes.Buffer
	for i := range 3 {
		frame, err := Encode(&Command{Code: 206, Opaque: int32(i), Body: body, HeaderType: SerializeType(i % 2)})
		if err != nil {
			t.Fatal(err)
		}
		buf.Write(frame)
	}
	r := NewReader(&buf, 0)
	for i := range 3 {
		cmd, err := r.Read()
		if err != nil {
			t.Fatal(err)
		}
		if cmd.Opaque != int32(i) || !bytes.Equal(cmd.Body, body) || cmd.HeaderType != SerializeType(i%2) {
			t.Fatalf("frame %d: %v", i, cmd)
		}
	}
}

func TestJSONHeaderTolerance(t *testing.T) {
	cmd := &Command{}
	err := decodeJSONHeader([]byte(`{"version":3,"language":9,"extFields":{"n":12,"b":true,"z":null,"s":"x"},"code":105,"opaque":-1}`), cmd)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"n": "12", "b": "true", "s": "x"}
	if cmd.Language != LanguageGo || cmd.Opaque != -1 || !reflect.DeepEqual(cmd.ExtFields, want) {
		t.Fatalf("decoded %+v", cmd)
	}
	if err := decodeJSONHeader([]byte(`{"extFields":{"a":{"x":1}}}`), &Command{}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("object ext value: err = %v", err)
	}
}
