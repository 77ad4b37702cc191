package message

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
	"net/netip"
)

// Message is what a producer sends (Java's Message, without the fields that never reach the wire).
type Message struct {
	Topic      string            // topic; empty in a batch body, whose topic is in the request header
	Flag       int32             // flag: the application's, RocketMQ never reads it
	Body       []byte            // body, as stored: still compressed when the system flag says so
	Properties map[string]string // properties; decoders never return nil
}

// Ext is a stored message (Java's MessageExt) as the broker writes it in its commit log and returns it in pull
// and pop responses. msgId is not a field: it is derived (see OffsetMsgID), and storeSize is StoredSize.
type Ext struct {
	Message
	QueueID                   int32          // queueId
	QueueOffset               int64          // queueOffset: the message's index in its consume queue
	CommitLogOffset           int64          // commitLogOffset: PHYSICALOFFSET, its byte offset in the commit log
	SysFlag                   int32          // sysFlag; AppendExt sets the two host bits from BornHost and StoreHost
	BodyCRC                   int32          // bodyCRC: see BodyCRC, written as given
	BornTimestamp             int64          // bornTimestamp, ms since the epoch, the producer's clock
	BornHost                  netip.AddrPort // bornHost: the producer's address as the broker saw it
	StoreTimestamp            int64          // storeTimestamp, ms since the epoch, the broker's clock
	StoreHost                 netip.AddrPort // storeHost: the broker's address (it names the commit log)
	ReconsumeTimes            int32          // reconsumeTimes
	PreparedTransactionOffset int64          // preparedTransactionOffset
}

// BodyCRC is the body checksum the broker stores (UtilAll.crc32): CRC-32 (IEEE) with its top bit cleared, so
// that it is never negative as a Java int.
func BodyCRC(body []byte) int32 { return int32(crc32.ChecksumIEEE(body) & 0x7FFFFFFF) }

// OffsetMsgID is the message's "offset message id": its store host and commit log offset (see OffsetMsgID).
func (m *Ext) OffsetMsgID() string { return OffsetMsgID(m.StoreHost, m.CommitLogOffset) }

// fixedSize is the stored layout without the two hosts, the body, the topic and the properties.
const fixedSize = 4 + 4 + 4 + 4 + 4 + 8 + 8 + 4 + 8 + 8 + 4 + 8 + 4 + 2

// minStoredSize is the smallest stored message: IPv4 hosts, V1 magic, everything empty.
const minStoredSize = fixedSize + 8 + 8 + 1

// host is the address as Java has it: an IPv4-mapped IPv6 address is an Inet4Address there (InetAddress.getByAddress
// makes one of the 16 bytes, Java sockets report one), so it is stored as 4 bytes. An unset address is 0.0.0.0.
func host(ap netip.AddrPort) netip.Addr {
	a := ap.Addr().Unmap()
	if !a.IsValid() {
		return netip.IPv4Unspecified()
	}
	return a
}

// hostLen is the stored size of a host: address and a 4-byte port.
func hostLen(ap netip.AddrPort) int {
	if host(ap).Is4() {
		return 4 + 4
	}
	return 16 + 4
}

// topicLenSize is the topic's length prefix: 2 bytes (V2 magic) for topics longer than 127 bytes. The store does
// the same (CommitLog with autoMessageVersionOnTopicLen, the default), but counts UTF-16 chars, not bytes: a topic
// of at most 127 chars and more UTF-8 bytes would get a truncated 1-byte length there. Topic names are ASCII.
func topicLenSize(topic string) int {
	if len(topic) > math.MaxInt8 {
		return 2
	}
	return 1
}

// StoredSize is the TOTALSIZE AppendExt writes for m when it succeeds (MessageExtEncoder.calMsgLength).
func StoredSize(m *Ext) int {
	return fixedSize + hostLen(m.BornHost) + hostLen(m.StoreHost) + len(m.Body) + topicLenSize(m.Topic) +
		len(m.Topic) + propertiesLen(m.Properties)
}

// AppendExt appends m in the stored layout: the order of MessageDecoder.encode, with the magic code and topic
// length MessageExtEncoder.encode chooses (V2 for topics longer than 127 bytes; MessageDecoder.encode always
// writes V1, which truncates such a topic's length), and the properties of EncodeProperties. It sets the system
// flag's host bits from the addresses (CommitLog sets them, never clears them; a bit that disagrees with the
// address would make unreadable bytes). It does not compress, and it returns an error wrapping ErrTooLarge,
// with dst unchanged, for a topic or properties longer than 32767 bytes or a message over 2 GiB.
func AppendExt(dst []byte, m *Ext) ([]byte, error) {
	size := StoredSize(m)
	props := propertiesLen(m.Properties)
	switch {
	case props > math.MaxInt16:
		return dst, fmt.Errorf("message: properties of %d bytes (at most %d): %w", props, math.MaxInt16, ErrTooLarge)
	case len(m.Topic) > math.MaxInt16:
		return dst, fmt.Errorf("message: topic of %d bytes (at most %d): %w", len(m.Topic), math.MaxInt16, ErrTooLarge)
	case size > math.MaxInt32:
		return dst, fmt.Errorf("message: %d bytes stored: %w", size, ErrTooLarge)
	}
	sysFlag := m.SysFlag &^ (BornHostV6Flag | StoreHostV6Flag)
	if !host(m.BornHost).Is4() {
		sysFlag |= BornHostV6Flag
	}
	if !host(m.StoreHost).Is4() {
		sysFlag |= StoreHostV6Flag
	}
	magic := MagicCodeV1
	if topicLenSize(m.Topic) == 2 {
		magic = MagicCodeV2
	}
	dst = grow(dst, size)
	dst = binary.BigEndian.AppendUint32(dst, uint32(size))              // 1 TOTALSIZE
	dst = binary.BigEndian.AppendUint32(dst, uint32(magic))             // 2 MAGICCODE
	dst = binary.BigEndian.AppendUint32(dst, uint32(m.BodyCRC))         // 3 BODYCRC
	dst = binary.BigEndian.AppendUint32(dst, uint32(m.QueueID))         // 4 QUEUEID
	dst = binary.BigEndian.AppendUint32(dst, uint32(m.Flag))            // 5 FLAG
	dst = binary.BigEndian.AppendUint64(dst, uint64(m.QueueOffset))     // 6 QUEUEOFFSET
	dst = binary.BigEndian.AppendUint64(dst, uint64(m.CommitLogOffset)) // 7 PHYSICALOFFSET
	dst = binary.BigEndian.AppendUint32(dst, uint32(sysFlag))           // 8 SYSFLAG
	dst = binary.BigEndian.AppendUint64(dst, uint64(m.BornTimestamp))   // 9 BORNTIMESTAMP
	dst = appendHost(dst, m.BornHost)                                   // 10 BORNHOST
	dst = binary.BigEndian.AppendUint64(dst, uint64(m.StoreTimestamp))  // 11 STORETIMESTAMP
	dst = appendHost(dst, m.StoreHost)                                  // 12 STOREHOSTADDRESS
	dst = binary.BigEndian.AppendUint32(dst, uint32(m.ReconsumeTimes))  // 13 RECONSUMETIMES
	dst = binary.BigEndian.AppendUint64(dst, uint64(m.PreparedTransactionOffset))
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(m.Body))) // 15 BODY
	dst = append(dst, m.Body...)
	if magic == MagicCodeV2 { // 16 TOPIC
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(m.Topic)))
	} else {
		dst = append(dst, byte(len(m.Topic)))
	}
	dst = append(dst, m.Topic...)
	dst = binary.BigEndian.AppendUint16(dst, uint16(props)) // 17 PROPERTIES
	return appendProperties(dst, m.Properties), nil
}

// grow makes room for n more bytes with one allocation.
func grow(dst []byte, n int) []byte {
	if cap(dst)-len(dst) < n {
		dst = append(make([]byte, 0, len(dst)+n), dst...)
	}
	return dst
}

func appendHost(dst []byte, ap netip.AddrPort) []byte {
	a := host(ap)
	if a.Is4() {
		b := a.As4()
		dst = append(dst, b[:]...)
	} else {
		b := a.As16()
		dst = append(dst, b[:]...)
	}
	return binary.BigEndian.AppendUint32(dst, uint32(ap.Port()))
}

// reader reads big-endian fields from one record; the first short read sets err and every later read is zero.
type reader struct {
	b   []byte
	err error
}

func (r *reader) next(n int, what string) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 {
		r.err = malformed("%s: negative length %d", what, n)
		return nil
	}
	if n > len(r.b) {
		r.err = malformed("%s: %d bytes needed, %d left", what, n, len(r.b))
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u16(what string) uint16 {
	if b := r.next(2, what); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

func (r *reader) i32(what string) int32 {
	if b := r.next(4, what); b != nil {
		return int32(binary.BigEndian.Uint32(b))
	}
	return 0
}

func (r *reader) i64(what string) int64 {
	if b := r.next(8, what); b != nil {
		return int64(binary.BigEndian.Uint64(b))
	}
	return 0
}

// host reads an address of n bytes and a port as MessageDecoder.decode does: Java's InetSocketAddress refuses a
// port outside 0..65535, and InetAddress.getByAddress unmaps an IPv4-mapped address.
func (r *reader) host(n int, what string) netip.AddrPort {
	b := r.next(n, what)
	port := r.i32(what + " port")
	if r.err != nil {
		return netip.AddrPort{}
	}
	if port < 0 || port > math.MaxUint16 {
		r.err = malformed("%s port %d", what, port)
		return netip.AddrPort{}
	}
	a, _ := netip.AddrFromSlice(b)
	return netip.AddrPortFrom(a.Unmap(), uint16(port))
}

// DecodeExt decodes the stored message at the start of b (MessageDecoder.decode, without decompressing) and
// returns it with its size. It is stricter than Java, which returns null for what it cannot read but never
// checks TOTALSIZE: here TOTALSIZE must be the size of the fields, negative lengths are errors, and so is a V1
// topic length over 127 (a negative Java byte). A V2 magic with a short topic is accepted; AppendExt would write
// it back as V1. The message shares no memory with b.
func DecodeExt(b []byte) (*Ext, int, error) {
	m, n, err := decodeExt(b)
	if err != nil {
		return nil, 0, fmt.Errorf("message: stored message: %w", err)
	}
	return m, n, nil
}

func decodeExt(b []byte) (*Ext, int, error) {
	if len(b) < 4 {
		return nil, 0, malformed("%d bytes, no TOTALSIZE", len(b))
	}
	size := int(int32(binary.BigEndian.Uint32(b)))
	if size < minStoredSize || size > len(b) {
		return nil, 0, malformed("TOTALSIZE %d, %d bytes available (at least %d)", size, len(b), minStoredSize)
	}
	r := reader{b: b[4:size]}
	magic := r.i32("MAGICCODE")
	switch magic {
	case MagicCodeV1, MagicCodeV2:
	case BlankMagicCode:
		return nil, 0, malformed("the blank magic code of a commit log file's end")
	default:
		return nil, 0, malformed("magic code %#08x", uint32(magic))
	}
	m := &Ext{}
	m.BodyCRC = r.i32("BODYCRC")
	m.QueueID = r.i32("QUEUEID")
	m.Flag = r.i32("FLAG")
	m.QueueOffset = r.i64("QUEUEOFFSET")
	m.CommitLogOffset = r.i64("PHYSICALOFFSET")
	m.SysFlag = r.i32("SYSFLAG")
	m.BornTimestamp = r.i64("BORNTIMESTAMP")
	bornLen, storeLen := 4, 4
	if m.SysFlag&BornHostV6Flag != 0 {
		bornLen = 16
	}
	if m.SysFlag&StoreHostV6Flag != 0 {
		storeLen = 16
	}
	m.BornHost = r.host(bornLen, "BORNHOST")
	m.StoreTimestamp = r.i64("STORETIMESTAMP")
	m.StoreHost = r.host(storeLen, "STOREHOST")
	m.ReconsumeTimes = r.i32("RECONSUMETIMES")
	m.PreparedTransactionOffset = r.i64("PREPARED TRANSACTION OFFSET")
	if body := r.next(int(r.i32("BODY length")), "BODY"); len(body) > 0 {
		m.Body = append([]byte(nil), body...)
	}
	var topicLen int
	if magic == MagicCodeV2 {
		topicLen = int(int16(r.u16("TOPIC length")))
	} else if b := r.next(1, "TOPIC length"); b != nil {
		topicLen = int(int8(b[0]))
	}
	m.Topic = string(r.next(topicLen, "TOPIC"))
	m.Properties = decodePropertiesLenient(r.next(int(int16(r.u16("PROPERTIES length"))), "PROPERTIES"))
	if r.err != nil {
		return nil, 0, r.err
	}
	if len(r.b) != 0 {
		return nil, 0, malformed("TOTALSIZE %d, %d bytes after the properties", size, len(r.b))
	}
	return m, size, nil
}

// DecodeExts decodes a concatenation of stored messages: the body of a pull or pop response
// (MessageDecoder.decodes). Java stops at the first message it cannot read and returns the ones before it; here
// they are returned too, with the error.
func DecodeExts(b []byte) ([]*Ext, error) {
	var out []*Ext
	for off := 0; off < len(b); {
		m, n, err := decodeExt(b[off:])
		if err != nil {
			return out, fmt.Errorf("message: stored message %d at byte %d: %w", len(out), off, err)
		}
		out = append(out, m)
		off += n
	}
	return out, nil
}
