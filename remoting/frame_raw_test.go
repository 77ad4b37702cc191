package remoting

import (
	"bytes"
	"testing"
)

// ReadFrame returns each frame exactly as it arrived, length prefix included, beside the command it decodes to.
func TestReadFrameReturnsTheBytes(t *testing.T) {
	a := NewRequest(GetRouteInfoByTopic, map[string]string{"topic": "T"})
	a.Opaque = 7
	b := &Command{Code: Success, Opaque: 7, Flag: FlagResponse, Body: []byte("body"), HeaderType: SerializeRocketMQ}
	var stream []byte
	var frames [][]byte
	for _, cmd := range []*Command{a, b} {
		f, err := Encode(cmd)
		if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, f)
		stream = append(stream, f...)
	}
	r := NewReader(bytes.NewReader(stream), 0)
	for i, want := range frames {
		cmd, raw, err := r.ReadFrame()
		if err != nil || !bytes.Equal(raw, want) || cmd.Opaque != 7 {
			t.Fatalf("frame %d: %v, %q, want %q", i, err, raw, want)
		}
	}
}
