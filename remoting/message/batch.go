package message

import (
	"encoding/binary"
	"fmt"
	"math"
)

// batchFixedSize is a batch entry without its body and properties: TOTALSIZE, MAGICCODE, BODYCRC, FLAG, the
// body length and the properties length.
const batchFixedSize = 4 + 4 + 4 + 4 + 4 + 2

// EncodeBatch writes the body of SEND_BATCH_MESSAGE (MessageDecoder.encodeMessages): for each message TOTALSIZE,
// a zero MAGICCODE and BODYCRC, FLAG, the body and the properties. Topics are not written (the request header
// carries the batch's one topic). A message whose properties are longer than 32767 bytes is an error wrapping
// ErrTooLarge; Java truncates its length.
func EncodeBatch(msgs []Message) ([]byte, error) {
	total := 0
	for i := range msgs {
		props := propertiesLen(msgs[i].Properties)
		if props > math.MaxInt16 {
			return nil, fmt.Errorf("message: batch message %d: properties of %d bytes (at most %d): %w",
				i, props, math.MaxInt16, ErrTooLarge)
		}
		total += batchFixedSize + len(msgs[i].Body) + props
		if total > math.MaxInt32 {
			return nil, fmt.Errorf("message: batch of more than %d bytes: %w", math.MaxInt32, ErrTooLarge)
		}
	}
	dst := make([]byte, 0, total)
	for i := range msgs {
		m := &msgs[i]
		props := propertiesLen(m.Properties)
		dst = binary.BigEndian.AppendUint32(dst, uint32(batchFixedSize+len(m.Body)+props)) // 1 TOTALSIZE
		dst = binary.BigEndian.AppendUint32(dst, 0)                                        // 2 MAGICCODE
		dst = binary.BigEndian.AppendUint32(dst, 0)                                        // 3 BODYCRC
		dst = binary.BigEndian.AppendUint32(dst, uint32(m.Flag))                           // 4 FLAG
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(m.Body)))                      // 5 BODY
		dst = append(dst, m.Body...)
		dst = binary.BigEndian.AppendUint16(dst, uint16(props)) // 6 properties
		dst = appendProperties(dst, m.Properties)
	}
	return dst, nil
}

// DecodeBatch reads the body of SEND_BATCH_MESSAGE (MessageDecoder.decodeMessages; the broker's
// MessageExtEncoder reads it the same way). Like Java it ignores MAGICCODE and BODYCRC; unlike Java it requires
// TOTALSIZE to be the entry's size, and a truncated or negative length fails the whole batch, as Java's exception
// does. The messages' topics are empty and share no memory with b.
func DecodeBatch(b []byte) ([]Message, error) {
	var out []Message
	for off := 0; off < len(b); {
		m, n, err := decodeBatchEntry(b[off:])
		if err != nil {
			return nil, fmt.Errorf("message: batch message %d at byte %d: %w", len(out), off, err)
		}
		out = append(out, m)
		off += n
	}
	return out, nil
}

func decodeBatchEntry(b []byte) (Message, int, error) {
	if len(b) < 4 {
		return Message{}, 0, malformed("%d bytes, no TOTALSIZE", len(b))
	}
	size := int(int32(binary.BigEndian.Uint32(b)))
	if size < batchFixedSize || size > len(b) {
		return Message{}, 0, malformed("TOTALSIZE %d, %d bytes available (at least %d)", size, len(b), batchFixedSize)
	}
	r := reader{b: b[4:size]}
	r.i32("MAGICCODE")
	r.i32("BODYCRC")
	var m Message
	m.Flag = r.i32("FLAG")
	if body := r.next(int(r.i32("BODY length")), "BODY"); len(body) > 0 {
		m.Body = append([]byte(nil), body...)
	}
	m.Properties = decodePropertiesLenient(r.next(int(int16(r.u16("PROPERTIES length"))), "PROPERTIES"))
	if r.err != nil {
		return Message{}, 0, r.err
	}
	if len(r.b) != 0 {
		return Message{}, 0, malformed("TOTALSIZE %d, %d bytes after the properties", size, len(r.b))
	}
	return m, size, nil
}
