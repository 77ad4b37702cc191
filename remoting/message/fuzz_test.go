package message

import (
	"bytes"
	"net/netip"
	"reflect"
	"testing"

	"github.com/rocketpilot/rocketpilot/internal/fuzzbytes"
)

// Every fuzz target checks the same two things: any input gives an error or a value, never a panic, and an
// accepted value re-encodes to bytes that decode again and re-encode to the same bytes (a fixed point; the first
// encoding may differ from the input, e.g. property order, a V2 magic on a short topic, "+1" for "1").

func FuzzDecodeExts(f *testing.F) {
	var all []byte
	for _, fx := range storedFixtures {
		raw := readFixture(f, fx.file)
		f.Add(raw)
		all = append(all, raw...)
	}
	f.Add(all)
	f.Add(fuzzbytes.Seed("FuzzDecodeExts", 200))
	f.Fuzz(func(t *testing.T, b []byte) {
		msgs, err := DecodeExts(b)
		if err != nil && len(msgs) == 0 {
			return
		}
		var once []byte
		for _, m := range msgs {
			if once, err = AppendExt(once, m); err != nil {
				t.Fatalf("a decoded message does not encode: %v", err)
			}
		}
		again, err := DecodeExts(once)
		if err != nil || len(again) != len(msgs) {
			t.Fatalf("our own encoding does not decode: %d of %d, %v\n%x", len(again), len(msgs), err, once)
		}
		var twice []byte
		for _, m := range again {
			twice, _ = AppendExt(twice, m)
		}
		if !bytes.Equal(once, twice) {
			t.Fatalf("encode/decode is not a fixed point:\n%x\n%x", once, twice)
		}
	})
}

func FuzzDecodeBatch(f *testing.F) {
	f.Add(readFixture(f, "batch.hex"))
	f.Add(fuzzbytes.Seed("FuzzDecodeBatch", 64))
	f.Fuzz(func(t *testing.T, b []byte) {
		msgs, err := DecodeBatch(b)
		if err != nil {
			return
		}
		once, err := EncodeBatch(msgs)
		if err != nil {
			t.Fatalf("a decoded batch does not encode: %v", err)
		}
		again, err := DecodeBatch(once)
		if err != nil {
			t.Fatalf("our own encoding does not decode: %v\n%x", err, once)
		}
		if !reflect.DeepEqual(msgs, again) {
			t.Fatalf("decode/encode changed the messages:\n%+v\n%+v", msgs, again)
		}
		if twice, _ := EncodeBatch(again); !bytes.Equal(once, twice) {
			t.Fatalf("encode/decode is not a fixed point:\n%x\n%x", once, twice)
		}
	})
}

func FuzzDecodeProperties(f *testing.F) {
	for _, s := range []string{"", "a\x01b\x02", "KEYS\x01k1 k2\x02TAGS\x01a\x02", "a\x01b\x01c", "\x01\x02\x01x\x02"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, _ := DecodeProperties(s) // the map Java would build, whatever was dropped
		once := EncodeProperties(m)
		again, err := DecodeProperties(once)
		if err != nil {
			t.Fatalf("our own encoding drops segments: %v\n%q", err, once)
		}
		if !reflect.DeepEqual(m, again) {
			t.Fatalf("decode/encode changed the properties:\n%q\n%q", m, again)
		}
		if twice := EncodeProperties(again); once != twice {
			t.Fatalf("encode/decode is not a fixed point:\n%q\n%q", once, twice)
		}
	})
}

// fuzzText checks a parser of one of the text formats against its builder.
func fuzzText[T any](f *testing.F, parse func(string) (T, error), build func(T) string, seeds ...string) {
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := parse(s)
		if err != nil {
			return
		}
		once := build(v)
		again, err := parse(once)
		if err != nil {
			t.Fatalf("our own %q does not parse: %v (from %q)", once, err, s)
		}
		if !reflect.DeepEqual(v, again) {
			t.Fatalf("build/parse changed the value:\n%+v\n%+v", v, again)
		}
		if twice := build(again); once != twice {
			t.Fatalf("build/parse is not a fixed point: %q, %q", once, twice)
		}
	})
}

func FuzzParseExtraInfo(f *testing.F) {
	fuzzText(f, ParseExtraInfo, ExtraInfo.String,
		"40 1700000000000 60000 3 0 broker-a 1 42", "40 1700000000000 60000 3 1 broker-a 1",
		"7 1700000000000 30000 999 2 broker-b 0 7 123", "-1 0 0 0 0  0", "+1 2 3 4 0 b 5 ")
}

func FuzzParseStartOffsetInfo(f *testing.F) {
	fuzzText(f, ParseStartOffsetInfo, BuildStartOffsetInfo, "0 1 40;1 1 7;2 0 0", "0 1 40;", "0 1 5;0 1 6")
}

func FuzzParseMsgOffsetInfo(f *testing.F) {
	fuzzText(f, ParseMsgOffsetInfo, BuildMsgOffsetInfo, "0 1 40,41,42;1 1 7", "0 1 5,6, ;", "0 1 ,")
}

func FuzzParseOrderCountInfo(f *testing.F) {
	fuzzText(f, ParseOrderCountInfo, BuildOrderCountInfo, "0 qo1%40 2;0 qo1%41 0;0 1 0", "2 qo-1%-1 -1")
}

type msgID struct {
	host   netip.AddrPort
	offset int64
}

func FuzzParseOffsetMsgID(f *testing.F) {
	fuzzText(f,
		func(s string) (msgID, error) { h, o, err := ParseOffsetMsgID(s); return msgID{h, o}, err },
		func(id msgID) string { return OffsetMsgID(id.host, id.offset) },
		"0A00000100002A9F0000000000001000", "FD00000000000000000000000000001000002A9F000000000000007B",
		"00000000000000000000ffff0a00000100002a9f0000000000001000")
}

// FuzzAppendExt builds messages from the fuzzer's bytes (odd hosts, long topics, odd properties) and checks
// that what AppendExt writes decodes to the same message, and is StoredSize bytes long.
func FuzzAppendExt(f *testing.F) {
	f.Add(fuzzbytes.Seed("FuzzAppendExt", 64))
	f.Add(fuzzbytes.Seed("FuzzAppendExt/long", 400))
	f.Fuzz(func(t *testing.T, b []byte) {
		c := fuzzbytes.NewChoices(b)
		text := func(max int) string {
			n := c.Intn(max)
			out := make([]byte, n)
			for i := range out {
				out[i] = "ab+%\x01\x02\xff"[c.Intn(7)]
			}
			return string(out)
		}
		addr := func() netip.AddrPort {
			var a16 [16]byte
			for i := range a16 {
				a16[i] = c.Next()
			}
			var a netip.Addr
			switch c.Intn(4) {
			case 0: // unset
			case 1:
				a = netip.AddrFrom4([4]byte(a16[:4]))
			case 2:
				a = netip.AddrFrom16(a16)
			case 3:
				a = netip.AddrFrom16(netip.AddrFrom4([4]byte(a16[:4])).As16()) // IPv4-mapped
			}
			return netip.AddrPortFrom(a, uint16(c.Next())<<8|uint16(c.Next()))
		}
		m := &Ext{Message: Message{Topic: text(256), Flag: int32(c.Next()), Body: []byte(text(64)),
			Properties: map[string]string{}}}
		for range c.Intn(4) {
			m.Properties[text(8)] = text(8)
		}
		m.SysFlag = int32(c.Next()) << c.Intn(24)
		m.QueueOffset = int64(c.Next()) - 128
		m.BornHost, m.StoreHost = addr(), addr()
		enc, err := AppendExt(nil, m)
		if err != nil {
			t.Fatal(err)
		}
		if len(enc) != StoredSize(m) {
			t.Fatalf("%d bytes written, StoredSize %d", len(enc), StoredSize(m))
		}
		got, n, err := DecodeExt(enc)
		if err != nil || n != len(enc) {
			t.Fatalf("%v (%d of %d bytes)\n%x", err, n, len(enc), enc)
		}
		if got.Topic != m.Topic || !bytes.Equal(got.Body, m.Body) || got.Flag != m.Flag || got.QueueOffset != m.QueueOffset {
			t.Fatalf("round trip changed the message:\n%+v\n%+v", m, got)
		}
		if got.SysFlag&^(BornHostV6Flag|StoreHostV6Flag) != m.SysFlag&^(BornHostV6Flag|StoreHostV6Flag) {
			t.Fatalf("sys flag %#x became %#x", m.SysFlag, got.SysFlag)
		}
		for _, h := range [][2]netip.AddrPort{{m.BornHost, got.BornHost}, {m.StoreHost, got.StoreHost}} {
			if h[0].IsValid() && (h[0].Addr().Unmap() != h[1].Addr() || h[0].Port() != h[1].Port()) {
				t.Fatalf("host %v became %v", h[0], h[1])
			}
		}
		want, _ := DecodeProperties(EncodeProperties(m.Properties))
		if !reflect.DeepEqual(got.Properties, want) {
			t.Fatalf("properties %q became %q", m.Properties, got.Properties)
		}
	})
}
