package remoting

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

func ptr[T any](v T) *T { return &v }

func TestRegisterBrokerFixture(t *testing.T) {
	raw := readFixture(t, "register-broker.frame")
	cmd, err := NewReader(bytes.NewReader(raw), 0).Read()
	if err != nil {
		t.Fatal(err)
	}
	if cmd.Code != RegisterBroker || cmd.IsResponse() || cmd.Version != 479 || cmd.Language != LanguageJava {
		t.Fatalf("command %v", cmd)
	}
	h, err := ParseRegisterBrokerHeader(cmd)
	if err != nil {
		t.Fatal(err)
	}
	want := &RegisterBrokerHeader{BrokerName: "broker-a", BrokerAddr: "192.168.0.11:10911", ClusterName: "DefaultCluster",
		HAServerAddr: "192.168.0.11:10912", BrokerID: 1, EnableActingMaster: ptr(false), BodyCRC32: 1474475819}
	if !reflect.DeepEqual(h, want) {
		t.Fatalf("header\n got %+v\nwant %+v", h, want)
	}
	// The fixture's CRC was computed independently of BodyCRC32 (zlib's crc32, masked as UtilAll.crc32 does).
	if got := BodyCRC32(cmd.Body); got != h.BodyCRC32 {
		t.Fatalf("BodyCRC32 = %d, header says %d", got, h.BodyCRC32)
	}
	body, err := DecodeRegisterBrokerBody(cmd.Body)
	if err != nil {
		t.Fatal(err)
	}
	if body.DataVersion != (DataVersion{Counter: 3, Timestamp: 1726712345678}) || len(body.FilterServerList) != 0 {
		t.Fatalf("body %+v", body)
	}
	tbw := NewTopicConfig("TBW102")
	tbw.ReadQueueNums, tbw.WriteQueueNums, tbw.Perm = 8, 8, 7
	if got := body.TopicConfigTable["TBW102"]; !reflect.DeepEqual(got, tbw) || len(body.TopicConfigTable) != 3 {
		t.Fatalf("topic configs %+v", body.TopicConfigTable)
	}
	// Our encoding of the decoded body is Java's, up to the order of the topic table.
	again, err := DecodeRegisterBrokerBody(body.Encode())
	if err != nil || !reflect.DeepEqual(again, body) {
		t.Fatalf("re-encoded body decodes to %+v, %v", again, err)
	}
	// The header we write carries the same fields.
	back, err := ParseRegisterBrokerHeader(&Command{ExtFields: h.ExtFields()})
	if err != nil || !reflect.DeepEqual(back, h) {
		t.Fatalf("header round trip: %+v, %v", back, err)
	}
}

func TestRegisterBrokerHeaderErrors(t *testing.T) {
	good := (&RegisterBrokerHeader{BrokerName: "b", BrokerAddr: "a:1", ClusterName: "c", HAServerAddr: "a:2"}).ExtFields()
	for _, tc := range []struct {
		name, field, value string
		drop               bool
		want               string
	}{
		{name: "no brokerName", field: "brokerName", drop: true, want: "the custom field <brokerName> is null"},
		{name: "no haServerAddr", field: "haServerAddr", drop: true, want: "the custom field <haServerAddr> is null"},
		{name: "no brokerId", field: "brokerId", drop: true, want: "the custom field <brokerId> is null"},
		{name: "bad brokerId", field: "brokerId", value: "x1", want: `the custom field <brokerId> has a malformed value "x1"`},
		{name: "bad timeout", field: "heartbeatTimeoutMillis", value: "1.5", want: `the custom field <heartbeatTimeoutMillis> has a malformed value "1.5"`},
		{name: "crc overflows int", field: "bodyCrc32", value: "4294967295", want: `the custom field <bodyCrc32> has a malformed value "4294967295"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ext := map[string]string{}
			for k, v := range good {
				ext[k] = v
			}
			if tc.drop {
				delete(ext, tc.field)
			} else {
				ext[tc.field] = tc.value
			}
			_, err := ParseRegisterBrokerHeader(&Command{ExtFields: ext})
			var fe *HeaderFieldError
			if !errors.As(err, &fe) || fe.Field != tc.field || err.Error() != tc.want {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
	// Without any extension field the first required field of the Java class is reported.
	if _, err := ParseRegisterBrokerHeader(&Command{}); err == nil || err.Error() != "the custom field <brokerName> is null" {
		t.Fatalf("empty header: %v", err)
	}
	// Optional fields: Boolean.parseBoolean never fails; absent numbers stay unset.
	ext := map[string]string{"enableActingMaster": "TRUE", "compressed": "yes", "heartbeatTimeoutMillis": "+30000"}
	for k, v := range good {
		if k != "compressed" {
			ext[k] = v
		}
	}
	h, err := ParseRegisterBrokerHeader(&Command{ExtFields: ext})
	if err != nil || h.EnableActingMaster == nil || !*h.EnableActingMaster || h.Compressed || *h.HeartbeatTimeoutMillis != 30000 {
		t.Fatalf("optional fields: %+v %v", h, err)
	}
}

func TestUnregisterBrokerHeader(t *testing.T) {
	h := UnregisterBrokerHeader{BrokerName: "b", BrokerAddr: "a:1", ClusterName: "c", BrokerID: 2}
	cmd := NewUnregisterBrokerRequest(h)
	if cmd.Code != UnregisterBroker {
		t.Fatal(cmd)
	}
	got, err := ParseUnregisterBrokerHeader(cmd)
	if err != nil || *got != h {
		t.Fatalf("%+v %v", got, err)
	}
	delete(cmd.ExtFields, "clusterName")
	if _, err := ParseUnregisterBrokerHeader(cmd); err == nil || err.Error() != "the custom field <clusterName> is null" {
		t.Fatal(err)
	}
}

func TestRegisterBrokerResponseHeader(t *testing.T) {
	if ext := (&RegisterBrokerResponseHeader{}).ExtFields(); ext != nil {
		t.Fatalf("empty header writes %v", ext)
	}
	h := RegisterBrokerResponseHeader{HAServerAddr: "a:2", MasterAddr: "a:1"}
	if got := ParseRegisterBrokerResponseHeader(&Command{ExtFields: h.ExtFields()}); *got != h {
		t.Fatalf("%+v", got)
	}
}

func TestBodyCRC32(t *testing.T) {
	// CRC-32/IEEE of "123456789" is 0xcbf43926; UtilAll.crc32 clears the sign bit.
	if got := BodyCRC32([]byte("123456789")); got != 0x4bf43926 {
		t.Fatalf("%#x", got)
	}
	if BodyCRC32(nil) != 0 {
		t.Fatal("empty body")
	}
}

func TestRegisterBrokerBodyEncode(t *testing.T) {
	tc := NewTopicConfig("T\"1")
	tc.ReadQueueNums, tc.Order, tc.Attributes = 2, true, map[string]string{"b": "2", "a": "1"}
	b := &RegisterBrokerBody{
		TopicConfigTable: map[string]TopicConfig{"T\"1": tc, "A": NewTopicConfig("A")},
		DataVersion:      DataVersion{StateVersion: 1, Timestamp: 2, Counter: 3},
		FilterServerList: []string{"f:1"},
	}
	want := `{"filterServerList":["f:1"],"topicConfigSerializeWrapper":{` +
		`"dataVersion":{"counter":3,"stateVersion":1,"timestamp":2},` +
		`"mappingDataVersion":{"counter":0,"stateVersion":0,"timestamp":0},"topicConfigTable":{` +
		`"A":{"attributes":{},"order":false,"perm":6,"readQueueNums":16,"topicFilterType":"SINGLE_TAG","topicName":"A","topicSysFlag":0,"writeQueueNums":16},` +
		`"T\"1":{"attributes":{"a":"1","b":"2"},"order":true,"perm":6,"readQueueNums":2,"topicFilterType":"SINGLE_TAG","topicName":"T\"1","topicSysFlag":0,"writeQueueNums":16}},` +
		`"topicQueueMappingDetailMap":{},"topicQueueMappingInfoMap":{}}}`
	if got := string(b.Encode()); got != want {
		t.Fatalf("encode\n got %s\nwant %s", got, want)
	}
	back, err := DecodeRegisterBrokerBody(b.Encode())
	if err != nil || !reflect.DeepEqual(back, b) {
		t.Fatalf("round trip %+v %v", back, err)
	}

	req := NewRegisterBrokerRequest(RegisterBrokerHeader{BrokerName: "b", BrokerAddr: "a:1", ClusterName: "c", BodyCRC32: 5, Compressed: true}, b)
	h, err := ParseRegisterBrokerHeader(req)
	if err != nil || h.BodyCRC32 != BodyCRC32(req.Body) || h.Compressed || req.Version != VersionRocketMQ5 || req.Code != RegisterBroker {
		t.Fatalf("request %v: %+v %v", req, h, err)
	}
}

func TestRegisterBrokerBodyLenient(t *testing.T) {
	// Unknown fields are ignored, absent ones keep Java's defaults, fastjson's bare keys are read, a null topic
	// entry is dropped.
	b, err := DecodeRegisterBrokerBody([]byte(`{"x":[1,{}],"topicConfigSerializeWrapper":{"future":{0:"a"},` +
		`"topicConfigTable":{"T":{"topicName":"T","perm":4,"extra":true},"N":null},"dataVersion":{"counter":7}}}`))
	if err != nil {
		t.Fatal(err)
	}
	want := NewTopicConfig("T")
	want.Perm = PermRead
	if !reflect.DeepEqual(b.TopicConfigTable, map[string]TopicConfig{"T": want}) || b.DataVersion != (DataVersion{Counter: 7}) ||
		b.FilterServerList != nil {
		t.Fatalf("%+v", b)
	}
	for _, bad := range []string{``, `[]`, `{"topicConfigSerializeWrapper":{"topicConfigTable":{"T":{"perm":"x"}}}}`,
		`{"topicConfigSerializeWrapper":{"topicConfigTable":{"T":{"readQueueNums":4294967296}}}}`, `{"filterServerList":"a"}`, `{`} {
		if _, err := DecodeRegisterBrokerBody([]byte(bad)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: %v", bad, err)
		}
	}
	// The pre-V3_0_11 body is the wrapper alone.
	w, err := DecodeTopicConfigWrapper([]byte(`{"topicConfigTable":{"T":{"topicName":"T"}},"dataVersion":{"timestamp":9}}`))
	if err != nil || len(w.TopicConfigTable) != 1 || w.DataVersion.Timestamp != 9 || w.FilterServerList != nil {
		t.Fatalf("%+v %v", w, err)
	}
	enc := string(w.EncodeWrapper())
	if want := `{"dataVersion":{"counter":0,"stateVersion":0,"timestamp":9},"topicConfigTable":{"T":{"attributes":{},"order":false,` +
		`"perm":6,"readQueueNums":16,"topicFilterType":"SINGLE_TAG","topicName":"T","topicSysFlag":0,"writeQueueNums":16}}}`; enc != want {
		t.Fatalf("EncodeWrapper\n got %s\nwant %s", enc, want)
	}
}
