package message

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"net/netip"
	"strings"
)

// OffsetMsgID is the "offset message id" of a stored message (MessageDecoder.createMessageId): the store host's
// address (4 or 16 bytes), its port (4 bytes) and the commit log offset (8 bytes), in upper-case hex: 32 chars
// for an IPv4 host, 56 for IPv6. An IPv4-mapped address counts as IPv4 and an unset one as 0.0.0.0, as in
// AppendExt, so the id matches the stored bytes.
func OffsetMsgID(storeHost netip.AddrPort, commitLogOffset int64) string {
	var b [28]byte
	raw := binary.BigEndian.AppendUint64(appendHost(b[:0], storeHost), uint64(commitLogOffset))
	return strings.ToUpper(hex.EncodeToString(raw))
}

// ParseOffsetMsgID reads an offset message id (MessageDecoder.decodeMessageId). Java upper-cases the id first,
// so lower case is accepted; it reads any length other than 32 as IPv6 and turns a non-hex char into garbage,
// where this returns an error for anything but 32 or 56 hex chars, and for a port outside 0..65535 (which
// Java's InetSocketAddress refuses). An IPv4-mapped address is returned as IPv4, as Java's InetAddress does.
func ParseOffsetMsgID(id string) (netip.AddrPort, int64, error) {
	if len(id) != 32 && len(id) != 56 {
		return netip.AddrPort{}, 0, fmt.Errorf("message: offset msg id: %w", malformed("%d chars (32 or 56)", len(id)))
	}
	var buf [28]byte
	b := buf[:len(id)/2]
	if _, err := hex.Decode(b, []byte(id)); err != nil {
		return netip.AddrPort{}, 0, fmt.Errorf("message: offset msg id: %w", malformed("%v", err))
	}
	ipLen := len(b) - 12
	a, _ := netip.AddrFromSlice(b[:ipLen])
	port := int32(binary.BigEndian.Uint32(b[ipLen:]))
	if port < 0 || port > math.MaxUint16 {
		return netip.AddrPort{}, 0, fmt.Errorf("message: offset msg id: %w", malformed("port %d", port))
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(port)), int64(binary.BigEndian.Uint64(b[ipLen+4:])), nil
}
