package remoting

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"path/filepath"
	"reflect"
	"testing"
)

func addFrameSeeds(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.frame"))
	for _, file := range files {
		f.Add(readFixture(f, filepath.Base(file)))
	}
}

// FuzzReadFrame feeds arbitrary streams to the frame reader: it must return errors, never panic, and whatever it
// decodes must re-encode to a frame that decodes to the same command.
func FuzzReadFrame(f *testing.F) {
	addFrameSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReader(bytes.NewReader(data), 1<<16)
		for range 4 {
			cmd, err := r.Read()
			if err != nil {
				return
			}
			frame, err := Encode(cmd)
			if err != nil {
				continue // e.g. a binary header whose decoded remark no longer fits: fine to refuse
			}
			again, err := Decode(frame[4:])
			if err != nil {
				t.Fatalf("re-encoded frame does not decode: %v\n%q", err, frame)
			}
			if !sameCommand(cmd, again) {
				t.Fatalf("round trip changed the command:\n%v\n%v", cmd, again)
			}
		}
	})
}

func sameCommand(a, b *Command) bool {
	if len(a.ExtFields) == 0 && len(b.ExtFields) == 0 {
		a2, b2 := *a, *b
		a2.ExtFields, b2.ExtFields = nil, nil
		return reflect.DeepEqual(a2, b2)
	}
	return reflect.DeepEqual(a, b)
}

// fuzzBody checks a body decoder: any input yields an error or a value, never a panic, and an accepted value
// survives encode → decode → encode unchanged (the encoders are what the embedded NameServer writes).
func fuzzBody[T any](f *testing.F, decode func([]byte) (*T, error), encode func(*T) []byte, seeds ...string) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		v, err := decode(body)
		if err != nil {
			return
		}
		once := encode(v)
		again, err := decode(once)
		if err != nil {
			t.Fatalf("our own encoding does not decode: %v\n%s", err, once)
		}
		if twice := encode(again); !bytes.Equal(once, twice) {
			t.Fatalf("encode/decode is not a fixed point:\n%s\n%s", once, twice)
		}
	})
}

func FuzzDecodeTopicRouteData(f *testing.F) {
	seeds := []string{`{"queueDatas":[{"brokerName":"b","topicSynFlag":1}],"brokerDatas":[{"brokerAddrs":{0:"a:1"}}]}`}
	for _, name := range []string{"route-legacy.frame", "route-standard.frame"} {
		raw := readFixture(f, name)
		cmd, err := Decode(raw[4:])
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, string(cmd.Body))
	}
	fuzzBody(f, DecodeTopicRouteData, func(r *TopicRouteData) []byte { return r.Encode(false) }, seeds...)
}

func FuzzDecodeClusterInfo(f *testing.F) {
	fuzzBody(f, DecodeClusterInfo, (*ClusterInfo).Encode,
		`{"brokerAddrTable":{"b":{"brokerAddrs":{0:"a:1",1:"a:2"},"brokerName":"b","cluster":"c"}},"clusterAddrTable":{"c":["b"]}}`)
}

func FuzzDecodeTopicList(f *testing.F) {
	fuzzBody(f, DecodeTopicList, (*TopicList).Encode, `{"topicList":["a","b"]}`, `{"brokerAddr":"x","topicList":[]}`)
}

func FuzzDecodeKVTable(f *testing.F) {
	fuzzBody(f, DecodeKVTable, (*KVTable).Encode, `{"table":{"k":"v"}}`)
}

// FuzzNormalizeFastJSON checks the dialect normalizer: standard JSON passes through unchanged, and quoting bare
// keys never turns valid JSON invalid.
func FuzzNormalizeFastJSON(f *testing.F) {
	for _, s := range []string{`{0:"a",1:{2:[3,{4:5}]}}`, `{"a":"{0:1}"}`, `[{},{a:1}]`, `{"x\"":1}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out := normalizeFastJSON(in)
		if json.Valid(in) && !bytes.Equal(out, in) {
			t.Fatalf("valid JSON was changed:\n%q\n%q", in, out)
		}
	})
}

// FuzzJSONHeaderFastPath is a differential test: whenever the reflection-free header decoder accepts input, the
// general decoder accepts it too and decodes the same command.
func FuzzJSONHeaderFastPath(f *testing.F) {
	for _, s := range []string{
		`{"code":105,"extFields":{"topic":"TopicTest"},"flag":0,"language":"JAVA","opaque":46,"serializeTypeCurrentRPC":"JSON","version":401}`,
		`{"code":17,"flag":1,"language":"GO","opaque":-3,"remark":"x","version":0}`,
		`{"language":9,"extFields":{"a":null,"b":"c"},"x":true,"y":null,"z":1}`,
		` { "code" : 0 } `, `{}`, `{"Code":1}`, `{"code":01}`, `{"code":1.0}`,
		`{"extFields":{"a":"1"},"extFields":{"b":"2"}}`, `{"extFields":{"a":"1"},"extFields":{"a":null}}`,
		// Escapes, which every send's properties carry, and the surrogates the fast path leaves alone.
		`{"code":310,"remark":"a\"b\\c\/d\n","extFields":{"i":"TAGS\u0001a\u0002KEYS\u0001k\u0002"}}`,
		`{"remark":"\ud83d\ude00"}`, `{"remark":"\ud800"}`, `{"c\u006fde":5}`, "{\"remark\":\"\\u00e9\xff\"}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var fast, slow Command
		if !fastJSONHeader(data, &fast) {
			return
		}
		if err := decodeJSONHeaderSlow(data, &slow); err != nil {
			t.Fatalf("fast path accepted what the general decoder rejects (%v): %q", err, data)
		}
		if !sameCommand(&fast, &slow) {
			t.Fatalf("decoders disagree on %q:\nfast %+v\nslow %+v", data, fast, slow)
		}
	})
}

func FuzzDecodeRegisterBrokerBody(f *testing.F) {
	raw := readFixture(f, "register-broker.frame")
	cmd, err := Decode(raw[4:])
	if err != nil {
		f.Fatal(err)
	}
	fuzzBody(f, DecodeRegisterBrokerBody, (*RegisterBrokerBody).Encode, string(cmd.Body), `{}`,
		`{"filterServerList":[null,"a"],"topicConfigSerializeWrapper":{"topicConfigTable":{"T":{"attributes":null},"U":null}}}`,
		`{"topicConfigSerializeWrapper":{"topicConfigTable":{"\u00e9":{"topicName":"\ud800"}},"dataVersion":{0:1}}}`)
}

func FuzzDecodeTopicConfigWrapper(f *testing.F) {
	fuzzBody(f, DecodeTopicConfigWrapper, (*RegisterBrokerBody).EncodeWrapper,
		`{"topicConfigTable":{"T":{"topicName":"T","perm":4}},"dataVersion":{"counter":1}}`)
}

// FuzzParseRegisterBrokerHeader checks the 103 header parser: any extension fields yield an error or a header
// whose own extension fields parse back to it.
func FuzzParseRegisterBrokerHeader(f *testing.F) {
	f.Add("b", "a:1", "c", "a:2", "0", "30000", "true", "123")
	f.Add("", "", "", "", "-1", "x", "TRUE", "-5")
	f.Fuzz(func(t *testing.T, name, addr, cluster, ha, id, timeout, acting, crc string) {
		ext := map[string]string{"brokerName": name, "brokerAddr": addr, "clusterName": cluster, "haServerAddr": ha,
			"brokerId": id, "heartbeatTimeoutMillis": timeout, "enableActingMaster": acting, "bodyCrc32": crc}
		h, err := ParseRegisterBrokerHeader(&Command{ExtFields: ext})
		if err != nil {
			return
		}
		again, err := ParseRegisterBrokerHeader(&Command{ExtFields: h.ExtFields()})
		if err != nil || !reflect.DeepEqual(again, h) {
			t.Fatalf("round trip: %+v → %+v, %v", h, again, err)
		}
	})
}

// FuzzDecodePartial checks DecodePartial against Decode on any frame: where Decode accepts a frame, DecodePartial
// reads the same command but for the extFields outside keep (all of them, if it read the header whole), Complete makes it Decode's, and encoding it again
// gives Decode's encoding; where Decode refuses one that DecodePartial accepted (a bad value it passed over),
// encoding the partial command fails rather than send it with fields missing.
func FuzzDecodePartial(f *testing.F) {
	addFrameSeeds(f)
	for _, h := range []string{
		`{"code":310,"extFields":{"a":"pg","b":"T","e":"3","i":"UNIQ_KEY\u0001x\u0002WAIT\u0001true"},"flag":0,"language":"GO","opaque":7}`,
		`{"code":310,"extFields":{"b":"T","i":"\ud800"}}`, `{"extFields":{"b":"1"},"extFields":{"b":null,"c":"\u00e9"}}`,
		`{"extFields":{"\u0062":"1"}}`, `{"extFields":{"b":"1","x":"\"}`,
	} {
		frame := binary.BigEndian.AppendUint32(nil, uint32(len(h)))
		f.Add(append(frame, h...))
	}
	keep := []string{"b", "e", "topic", "queueId"}
	f.Fuzz(func(t *testing.T, frame []byte) {
		partial, perr := DecodePartial(frame, func(int32) []string { return keep })
		whole, err := Decode(frame)
		if err != nil {
			if perr == nil {
				if out, err := Encode(partial); err == nil {
					t.Fatalf("a partial command Decode refuses encoded as %q", out)
				}
			}
			return
		}
		if perr != nil {
			t.Fatalf("Decode accepts what DecodePartial refuses (%v): %q", perr, frame)
		}
		kept := whole.ExtFields // a header the fast parser declines is read whole
		if partial.Partial() {
			kept = map[string]string{}
			for _, k := range keep {
				if v, ok := whole.ExtFields[k]; ok {
					kept[k] = v
				}
			}
		}
		if len(kept) == 0 {
			kept = nil
		}
		head := *partial
		head.ExtFields, head.header = nil, nil
		wholeHead := *whole
		wholeHead.ExtFields = nil
		if !reflect.DeepEqual(head, wholeHead) || len(partial.ExtFields)+len(kept) > 0 && !reflect.DeepEqual(partial.ExtFields, kept) {
			t.Fatalf("DecodePartial read %+v, Decode %+v", partial, whole)
		}
		want, werr := Encode(whole)
		got, gerr := Encode(partial)
		if (werr == nil) != (gerr == nil) || !bytes.Equal(want, got) {
			t.Fatalf("a partial command encodes as %q (%v), Decode's as %q (%v)", got, gerr, want, werr)
		}
		if !sameCommand(partial, whole) {
			t.Fatalf("completed %+v, whole %+v", partial, whole)
		}
	})
}
