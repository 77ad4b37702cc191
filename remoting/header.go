package remoting

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
)

// binaryFixedLen is the fixed part of a binary header: code, language, version, opaque, flag, remark length and
// extension length (RocketMQSerializable.java).
const binaryFixedLen = 2 + 1 + 2 + 4 + 4 + 4 + 4

// ErrMalformed marks input that does not follow the protocol. Errors wrapping it describe where it broke.
var ErrMalformed = errors.New("malformed remoting frame")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// appendJSONHeader writes the header as the Java side's fastjson does: fields sorted by name, absent values
// omitted, plus serializeTypeCurrentRPC. Extension keys are sorted so the output is deterministic.
func appendJSONHeader(dst []byte, c *Command) []byte {
	dst = append(dst, `{"code":`...)
	dst = strconv.AppendInt(dst, int64(c.Code), 10)
	if len(c.ExtFields) > 0 {
		dst = append(dst, `,"extFields":{`...)
		for i, k := range sortedMapKeys(c.ExtFields) {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSONString(dst, k, false)
			dst = append(dst, ':')
			dst = appendJSONString(dst, c.ExtFields[k], false)
		}
		dst = append(dst, '}')
	}
	dst = append(dst, `,"flag":`...)
	dst = strconv.AppendInt(dst, int64(c.Flag), 10)
	dst = append(dst, `,"language":"`...)
	dst = append(dst, c.Language.String()...)
	dst = append(dst, `","opaque":`...)
	dst = strconv.AppendInt(dst, int64(c.Opaque), 10)
	if c.Remark != "" {
		dst = append(dst, `,"remark":`...)
		dst = appendJSONString(dst, c.Remark, false)
	}
	dst = append(dst, `,"serializeTypeCurrentRPC":"JSON","version":`...)
	dst = strconv.AppendInt(dst, int64(c.Version), 10)
	return append(dst, '}')
}

// jsonHeader is the tolerant shape of a JSON header: language may be a name or a number, extension values
// may be any scalar.
type jsonHeader struct {
	Code      int32                      `json:"code"`
	Language  json.RawMessage            `json:"language"`
	Version   int32                      `json:"version"`
	Opaque    int32                      `json:"opaque"`
	Flag      int32                      `json:"flag"`
	Remark    *string                    `json:"remark"`
	ExtFields map[string]json.RawMessage `json:"extFields"`
}

func decodeJSONHeader(data []byte, c *Command) error {
	if fastJSONHeader(data, c) {
		return nil
	}
	return decodeJSONHeaderSlow(data, c)
}

// decodeJSONHeaderSlow is the general JSON header decoder.
func decodeJSONHeaderSlow(data []byte, c *Command) error {
	var h jsonHeader
	if err := json.Unmarshal(data, &h); err != nil {
		return malformed("JSON header: %v", err)
	}
	c.Code, c.Version, c.Opaque, c.Flag = h.Code, h.Version, h.Opaque, h.Flag
	if h.Remark != nil {
		c.Remark = *h.Remark
	}
	if len(h.Language) > 0 {
		var name string
		var num int
		switch {
		case json.Unmarshal(h.Language, &name) == nil:
			c.Language = ParseLanguage(name)
		case json.Unmarshal(h.Language, &num) == nil && num >= 0 && num <= math.MaxUint8:
			c.Language = LanguageCode(num)
		default:
			return malformed("JSON header: language %s", h.Language)
		}
	}
	if len(h.ExtFields) > 0 {
		c.ExtFields = make(map[string]string, len(h.ExtFields))
		for k, raw := range h.ExtFields {
			if string(raw) == "null" {
				continue
			}
			var s string
			if err := json.Unmarshal(raw, &s); err == nil {
				c.ExtFields[k] = s
				continue
			}
			// Numbers and booleans keep their literal text, as Java's toString would give.
			var v any
			if err := json.Unmarshal(raw, &v); err != nil {
				return malformed("JSON header: extFields[%q]: %v", k, err)
			}
			if _, isObj := v.(map[string]any); isObj {
				return malformed("JSON header: extFields[%q] is not a scalar", k)
			}
			if _, isArr := v.([]any); isArr {
				return malformed("JSON header: extFields[%q] is not a scalar", k)
			}
			c.ExtFields[k] = string(raw)
		}
	}
	return nil
}

// appendBinaryHeader writes the ROCKETMQ header encoding. Codes, versions and field lengths that do not fit its
// fixed-width fields are errors, not silent truncation as in Java.
func appendBinaryHeader(dst []byte, c *Command) ([]byte, error) {
	if c.Code < math.MinInt16 || c.Code > math.MaxInt16 {
		return nil, fmt.Errorf("code %d does not fit the binary header's int16; use JSON headers", c.Code)
	}
	if c.Version < math.MinInt16 || c.Version > math.MaxInt16 {
		return nil, fmt.Errorf("version %d does not fit the binary header's int16", c.Version)
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(int16(c.Code)))
	dst = append(dst, byte(c.Language))
	dst = binary.BigEndian.AppendUint16(dst, uint16(int16(c.Version)))
	dst = binary.BigEndian.AppendUint32(dst, uint32(c.Opaque))
	dst = binary.BigEndian.AppendUint32(dst, uint32(c.Flag))
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(c.Remark)))
	dst = append(dst, c.Remark...)
	extLenAt := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	for _, k := range sortedMapKeys(c.ExtFields) {
		v := c.ExtFields[k]
		if len(k) > math.MaxInt16 {
			return nil, fmt.Errorf("extension key of %d bytes does not fit the binary header", len(k))
		}
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(k)))
		dst = append(dst, k...)
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(v)))
		dst = append(dst, v...)
	}
	binary.BigEndian.PutUint32(dst[extLenAt:], uint32(len(dst)-extLenAt-4))
	return dst, nil
}

func decodeBinaryHeader(data []byte, c *Command) error {
	_, err := decodeBinaryHeaderKeep(data, c, nil)
	return err
}

// decodeBinaryHeaderKeep is decodeBinaryHeader that, with keep, keeps only the extFields keep names for the
// command's code (all when it returns nil); partial reports whether any may have been left out.
func decodeBinaryHeaderKeep(data []byte, c *Command, keepFor func(code int32) []string) (partial bool, err error) {
	if len(data) < binaryFixedLen {
		return false, malformed("binary header of %d bytes, need at least %d", len(data), binaryFixedLen)
	}
	c.Code = int32(int16(binary.BigEndian.Uint16(data[0:])))
	c.Language = LanguageCode(data[2])
	c.Version = int32(int16(binary.BigEndian.Uint16(data[3:])))
	c.Opaque = int32(binary.BigEndian.Uint32(data[5:]))
	c.Flag = int32(binary.BigEndian.Uint32(data[9:]))
	var keep []string
	if keepFor != nil {
		keep = keepFor(c.Code)
	}
	partial = keep != nil
	rest := data[13:]
	remark, rest, err := lengthPrefixed32(rest, "remark")
	if err != nil {
		return false, err
	}
	c.Remark = string(remark)
	ext, rest, err := lengthPrefixed32(rest, "extFields")
	if err != nil {
		return false, err
	}
	if len(rest) != 0 {
		return false, malformed("binary header has %d trailing bytes", len(rest))
	}
	for len(ext) > 0 {
		if len(ext) < 2 {
			return false, malformed("extFields: truncated key length")
		}
		kl := int(binary.BigEndian.Uint16(ext))
		ext = ext[2:]
		if kl > len(ext) {
			return false, malformed("extFields: key of %d bytes, %d left", kl, len(ext))
		}
		rawKey := ext[:kl]
		var val []byte
		if val, ext, err = lengthPrefixed32(ext[kl:], "extFields value"); err != nil {
			return false, err
		}
		if partial && !slices.Contains(keep, string(rawKey)) {
			continue
		}
		key := string(rawKey)
		if c.ExtFields == nil {
			c.ExtFields = make(map[string]string)
		}
		c.ExtFields[key] = string(val)
	}
	return partial, nil
}

// lengthPrefixed32 splits an unsigned 32-bit length and that many bytes off b.
func lengthPrefixed32(b []byte, what string) (field, rest []byte, err error) {
	if len(b) < 4 {
		return nil, nil, malformed("%s: truncated length", what)
	}
	n := uint64(binary.BigEndian.Uint32(b))
	b = b[4:]
	if n > uint64(len(b)) {
		return nil, nil, malformed("%s: length %d, %d bytes left", what, n, len(b))
	}
	return b[:n], b[n:], nil
}
