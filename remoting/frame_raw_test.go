package remoting

import (
	"bytes"
	"io"
	"testing"
	"time"
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

// The headers a producer sends carry escapes (the properties' \u0001 and \u0002 separators): the fast path takes
// them, and agrees with encoding/json.
func TestFastHeaderTakesEscapes(t *testing.T) {
	header := []byte(`{"code":310,"language":"GO","version":317,"opaque":5,"flag":0,"remark":"a\"b\\c\/d\n\t","extFields":` +
		`{"b":"TopicTest","i":"TAGS\u0001sync\u0002KEYS\u0001m-00001\u0002UNIQ_KEY\u0001é\u00e9\u0002"}}`)
	var fast, slow Command
	if !fastJSONHeader(header, &fast) {
		t.Fatal("the fast path refused a header with escapes")
	}
	if err := decodeJSONHeaderSlow(header, &slow); err != nil {
		t.Fatal(err)
	}
	if fast.Remark != slow.Remark || fast.ExtFields["i"] != slow.ExtFields["i"] || fast.Opaque != 5 ||
		fast.ExtFields["i"] != "TAGS\x01sync\x02KEYS\x01m-00001\x02UNIQ_KEY\x01éé\x02" {
		t.Fatalf("fast %+v, slow %+v", fast, slow)
	}
	for _, refused := range []string{`{"remark":"\ud800"}`, `{"remark":"\x"}`, `{"remark":"\u12"}`} {
		if fastJSONHeader([]byte(refused), &fast) {
			t.Errorf("the fast path took %s", refused)
		}
	}
}

// Buffered is true only while a whole frame waits in the buffer: not for part of one.
func TestBufferedMeansAWholeFrame(t *testing.T) {
	f, err := Encode(NewRequest(GetRouteInfoByTopic, map[string]string{"topic": "T"}))
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	r := NewReader(pr, 0)
	go func() {
		pw.Write(append(append([]byte{}, f...), f[:6]...)) // one frame and the start of the next
	}()
	if _, err := r.Read(); err != nil {
		t.Fatal(err)
	}
	if r.Buffered() {
		t.Fatal("Buffered with only 6 bytes of the next frame")
	}
	go pw.Write(f[6:])
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); {
		if _, err := r.r.Peek(len(f)); err == nil {
			break
		}
	}
	if !r.Buffered() {
		t.Fatal("not Buffered with the whole next frame read")
	}
}
