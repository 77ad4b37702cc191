package message

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrMalformed is wrapped by every decoding error of this package.
var ErrMalformed = errors.New("malformed")

// ErrTooLarge is wrapped by the encoding errors: a field too long for its length prefix. Java truncates the
// length with a cast and writes bytes nobody can read back; the broker refuses such messages before storing.
var ErrTooLarge = errors.New("too large")

// malformed is an error wrapping ErrMalformed; the exported functions put "message: " in front.
func malformed(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), ErrMalformed)
}

// EncodeProperties writes the properties string of MessageDecoder.messageProperties2String: name \x01 value \x02
// for each entry. Java walks a HashMap; here the names are sorted, so the same map always gives the same bytes.
// Like Java it writes entries verbatim: a name that is empty or holds \x01 or \x02, or a value that is empty or
// holds \x02, does not read back (DecodeProperties drops or splits it).
func EncodeProperties(props map[string]string) string {
	if len(props) == 0 {
		return ""
	}
	return string(appendProperties(nil, props))
}

func appendProperties(dst []byte, props map[string]string) []byte {
	if len(props) == 0 {
		return dst
	}
	var stack [16]string // most messages have a handful of properties: no allocation for them
	names := stack[:0]
	for k := range props {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		dst = append(dst, k...)
		dst = append(dst, NameValueSeparator)
		dst = append(dst, props[k]...)
		dst = append(dst, PropertySeparator)
	}
	return dst
}

// propertiesLen is len(EncodeProperties(props)) without building it.
func propertiesLen(props map[string]string) int {
	n := 0
	for k, v := range props {
		n += len(k) + len(v) + 2
	}
	return n
}

// DecodeProperties reads a properties string as MessageDecoder.string2messageProperties does, and always returns
// that map (never nil, so callers may add to it as Java code does): segments between \x02 separators, each split
// at its first \x01 into a non-empty name and a non-empty value (which may hold further \x01); a later duplicate
// name wins. Java drops every other segment without a word; the error here reports that something was dropped,
// and a caller that wants Java's behaviour ignores it. The bytes are kept as they are: Java decodes them as UTF-8
// first and so turns invalid sequences into U+FFFD, which cannot move a separator (both are ASCII).
func DecodeProperties(s string) (map[string]string, error) {
	m := make(map[string]string, strings.Count(s, string(PropertySeparator))+1)
	var dropped int
	for len(s) > 0 {
		seg := s
		if i := strings.IndexByte(s, PropertySeparator); i >= 0 {
			seg, s = s[:i], s[i+1:]
		} else {
			s = ""
		}
		// Java's tests (length >= 3, separator after the first char and before the last) amount to: a non-empty
		// name and a non-empty value. Its separator search runs past the segment's end; finding none inside is the
		// same as finding one outside.
		kv := strings.IndexByte(seg, NameValueSeparator)
		if kv <= 0 || kv == len(seg)-1 {
			dropped++
			continue
		}
		m[seg[:kv]] = seg[kv+1:]
	}
	if dropped > 0 {
		return m, fmt.Errorf("message: properties: %w", malformed("%d segment(s) without a name or a value dropped", dropped))
	}
	return m, nil
}

// decodePropertiesLenient is DecodeProperties as the stored layout uses it: Java's behaviour, no error.
func decodePropertiesLenient(b []byte) map[string]string {
	m, _ := DecodeProperties(string(b))
	return m
}
