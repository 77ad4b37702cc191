package message

import (
	"net/netip"
	"testing"

	"github.com/rocketpilot/rocketpilot/internal/fuzzbytes"
)

// benchMessages are 32 stored messages of a typical shape: 1 KiB bodies, a few properties.
func benchMessages() []*Ext {
	out := make([]*Ext, 32)
	for i := range out {
		body := fuzzbytes.Seed("bench", 1024)
		out[i] = &Ext{
			Message: Message{Topic: "TopicTest", Body: body, Properties: map[string]string{
				PropertyTags: "TagA", PropertyKeys: "order-1", PropertyUniqClientMessageIDKeyIdx: "0A0000010001000000000001",
			}},
			QueueID: 3, QueueOffset: int64(i), CommitLogOffset: int64(i) * 1200, BodyCRC: BodyCRC(body),
			BornTimestamp: 1700000000000, BornHost: netip.MustParseAddrPort("192.168.0.10:54321"),
			StoreTimestamp: 1700000000123, StoreHost: netip.MustParseAddrPort("10.0.0.1:10911"),
		}
	}
	return out
}

func BenchmarkAppendExt(b *testing.B) {
	msgs := benchMessages()
	size := 0
	for _, m := range msgs {
		size += StoredSize(m)
	}
	buf := make([]byte, 0, size)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	for b.Loop() {
		buf = buf[:0]
		for _, m := range msgs {
			var err error
			if buf, err = AppendExt(buf, m); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func BenchmarkDecodeExts(b *testing.B) {
	var body []byte
	for _, m := range benchMessages() {
		body, _ = AppendExt(body, m)
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeExts(body); err != nil {
			b.Fatal(err)
		}
	}
}
