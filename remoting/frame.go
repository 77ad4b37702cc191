package remoting

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
)

// DefaultMaxFrameSize bounds one frame. Java's NameServer defaults to 16 MiB, which large deployments exceed
// (a 60k-topic broker registration overflows it), so the default here is four times that. Callers set their own.
const DefaultMaxFrameSize = 64 << 20

// maxHeaderLen is the largest header the 24-bit length field can describe.
const maxHeaderLen = 1<<24 - 1

// ErrFrameTooLarge is returned, wrapped, when a frame's declared length exceeds the configured limit.
var ErrFrameTooLarge = errors.New("remoting frame exceeds the size limit")

// Encode returns cmd as one frame, length prefix included, with the header in cmd.HeaderType.
func Encode(cmd *Command) ([]byte, error) {
	return AppendFrame(make([]byte, 0, 128+len(cmd.Body)), cmd)
}

// AppendFrame appends cmd as one frame, length prefix included, to dst.
func AppendFrame(dst []byte, cmd *Command) ([]byte, error) {
	if err := cmd.Complete(); err != nil {
		return nil, err
	}
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, 0, 0, 0, 0) // total length, then type and header length
	var err error
	switch cmd.HeaderType {
	case SerializeJSON:
		dst = appendJSONHeader(dst, cmd)
	case SerializeRocketMQ:
		if dst, err = appendBinaryHeader(dst, cmd); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("unknown header serialization %s", cmd.HeaderType)
	}
	headerLen := len(dst) - start - 8
	if headerLen > maxHeaderLen {
		return nil, fmt.Errorf("header of %d bytes does not fit the 24-bit length field", headerLen)
	}
	dst = append(dst, cmd.Body...)
	total := len(dst) - start - 4
	if uint64(total) > 1<<31-1 {
		return nil, fmt.Errorf("frame of %d bytes does not fit the int32 length field", total)
	}
	binary.BigEndian.PutUint32(dst[start:], uint32(total))
	binary.BigEndian.PutUint32(dst[start+4:], uint32(cmd.HeaderType)<<24|uint32(headerLen))
	return dst, nil
}

// Decode parses one frame without its leading 4-byte total length: the header-length word, the header and the
// body. The returned command's Body aliases frame.
func Decode(frame []byte) (*Command, error) {
	return decode(frame, nil)
}

// DecodePartial is Decode for a proxy that passes the frame on as it is and reads little of it: of the extFields
// it reads only those keep names for the command's code (nil: all of them, as when a JSON header puts its
// extFields before its code), and passes over the others' values unread (unescaped and unchecked: a frame Decode
// would refuse for a bad value there may be accepted). The command remembers its header, which aliases frame:
// Complete reads the rest when it is needed, and Encode does so before encoding it again, so a partial command is
// never sent with fields missing. The header is read once, whatever the code.
func DecodePartial(frame []byte, keep func(code int32) []string) (*Command, error) {
	return decode(frame, keep)
}

// DecodePartialInto is DecodePartial into a command of the caller's, which it overwrites: for a reader that
// looks at each frame in turn and keeps none, without an allocation per frame.
func DecodePartialInto(cmd *Command, frame []byte, keep func(code int32) []string) error {
	*cmd = Command{}
	return decodeInto(cmd, frame, keep)
}

// Nothing keeps no extFields, for DecodePartial: a command's code, id and flags only.
func Nothing(int32) []string { return []string{} }

func decode(frame []byte, keep func(code int32) []string) (*Command, error) {
	cmd := &Command{}
	if err := decodeInto(cmd, frame, keep); err != nil {
		return nil, err
	}
	return cmd, nil
}

// decodeInto decodes into a zero command.
func decodeInto(cmd *Command, frame []byte, keep func(code int32) []string) error {
	if len(frame) < 4 {
		return malformed("frame of %d bytes has no header length", len(frame))
	}
	word := binary.BigEndian.Uint32(frame)
	headerLen := uint64(word & maxHeaderLen)
	if headerLen > uint64(len(frame)-4) {
		return malformed("header length %d exceeds the %d bytes after it", headerLen, len(frame)-4)
	}
	header, body := frame[4:4+headerLen], frame[4+headerLen:]
	cmd.HeaderType = SerializeType(word >> 24)
	var err error
	switch cmd.HeaderType {
	case SerializeJSON:
		if keep != nil {
			if ok, partial := fastJSONHeaderKeep(header, cmd, keep); ok {
				if partial {
					cmd.header = header
				}
				break
			}
		}
		err = decodeJSONHeader(header, cmd)
	case SerializeRocketMQ:
		var partial bool
		if partial, err = decodeBinaryHeaderKeep(header, cmd, keep); partial && err == nil {
			cmd.header = header
		}
	default:
		err = malformed("unknown header serialization %d", word>>24)
	}
	if err != nil {
		return err
	}
	if len(body) > 0 {
		cmd.Body = body
	}
	return nil
}

// Complete reads the extFields DecodePartial left unread. It is a no-op for a command read whole or made here.
// It changes ExtFields: a partial command is not safe for concurrent use until completed.
func (c *Command) Complete() error {
	if c.header == nil {
		return nil
	}
	whole := &Command{}
	var err error
	switch c.HeaderType {
	case SerializeJSON:
		err = decodeJSONHeader(c.header, whole)
	default:
		err = decodeBinaryHeader(c.header, whole)
	}
	if err != nil {
		return err
	}
	// Fields the caller set since stay as they are; those it did not are the frame's.
	for k, v := range c.ExtFields {
		if whole.ExtFields == nil {
			whole.ExtFields = map[string]string{}
		}
		whole.ExtFields[k] = v
	}
	c.ExtFields, c.header = whole.ExtFields, nil
	return nil
}

// Partial reports whether the command came from DecodePartial and Complete has not read the rest yet.
func (c *Command) Partial() bool { return c.header != nil }

// Reader reads frames from a stream, enforcing a size limit before allocating for a frame.
type Reader struct {
	r        *bufio.Reader
	maxFrame int
	inFrame  atomic.Bool
}

// InFrame reports whether the stream has delivered part of a frame that Read has not returned yet. It may be
// called while Read runs: it tells a peer that stopped in the middle of a frame, which Read would wait on forever,
// from one that is idle between frames.
func (r *Reader) InFrame() bool { return r.inFrame.Load() }

// Buffered reports whether a whole frame has arrived that Read has not consumed, so that the next Read will not
// wait: a proxy reading a burst can hold its writes until the burst is read, and write it on in one system call.
// Part of a frame is not enough; holding writes for its rest would delay them.
func (r *Reader) Buffered() bool {
	n := r.r.Buffered()
	if n < 4 {
		return false
	}
	head, err := r.r.Peek(4)
	if err != nil {
		return false
	}
	return uint64(n) >= 4+uint64(binary.BigEndian.Uint32(head))
}

// NewReader returns a Reader over r; maxFrame <= 0 means DefaultMaxFrameSize.
func NewReader(r io.Reader, maxFrame int) *Reader {
	if maxFrame <= 0 {
		maxFrame = DefaultMaxFrameSize
	}
	return &Reader{r: bufio.NewReaderSize(r, 64<<10), maxFrame: maxFrame}
}

// eagerAlloc is the frame size up to which Read allocates the whole frame at once; above it the buffer grows with
// the bytes that actually arrive, so a peer that announces a large frame and sends little costs little.
const eagerAlloc = 1 << 20

// Read returns the next command. io.EOF means the stream ended cleanly between frames; any other error leaves the
// stream unusable and the connection should be closed.
func (r *Reader) Read() (*Command, error) {
	cmd, _, err := r.ReadFrame()
	return cmd, err
}

// ReadFrame is Read that also returns the frame as it arrived, length prefix included, for a proxy to pass on
// unchanged without encoding it again. The command's Body aliases the frame.
func (r *Reader) ReadFrame() (*Command, []byte, error) {
	whole, err := r.ReadRaw(nil)
	if err != nil {
		return nil, nil, err
	}
	cmd, err := Decode(whole[4:])
	if err != nil {
		return nil, nil, err
	}
	return cmd, whole, nil
}

// ReadRaw reads the next frame, length prefix included, without decoding it, into buf's storage when it fits
// (a reader that is done with each frame before the next reuses one buffer), else into a new slice.
func (r *Reader) ReadRaw(buf []byte) ([]byte, error) {
	if r.r.Buffered() == 0 {
		// Wait between frames outside InFrame; the first byte of the next one starts it.
		if _, err := r.r.Peek(1); err != nil {
			return nil, err
		}
	}
	r.inFrame.Store(true)
	defer r.inFrame.Store(false)
	var lenBuf [4]byte
	if _, err := io.ReadFull(r.r, lenBuf[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, malformed("stream ended inside a length prefix")
		}
		return nil, err
	}
	total := uint64(binary.BigEndian.Uint32(lenBuf[:]))
	if total < 4 {
		return nil, malformed("frame length %d is shorter than the header length word", total)
	}
	if total > uint64(r.maxFrame) {
		return nil, fmt.Errorf("%w: %d bytes announced, limit %d", ErrFrameTooLarge, total, r.maxFrame)
	}
	var whole []byte
	switch {
	case uint64(cap(buf)) >= 4+total:
		whole = buf[:4+total]
	case total <= eagerAlloc:
		whole = make([]byte, 4+total)
	}
	if whole != nil {
		if _, err := io.ReadFull(r.r, whole[4:]); err != nil {
			return nil, truncated(err, total)
		}
	} else {
		var b bytes.Buffer
		b.Grow(eagerAlloc)
		b.Write(lenBuf[:])
		if n, err := io.CopyN(&b, r.r, int64(total)); err != nil {
			return nil, truncated(fmt.Errorf("after %d bytes: %w", n, err), total)
		}
		whole = b.Bytes()
	}
	copy(whole, lenBuf[:])
	return whole, nil
}

func truncated(err error, total uint64) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return malformed("stream ended inside a frame of %d bytes", total)
	}
	return fmt.Errorf("read frame of %d bytes: %w", total, err)
}
