package remoting

import (
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// normalizeFastJSON turns the legacy fastjson dialect into standard JSON. fastjson writes map keys that are not
// strings bare ({0:"10.0.0.1:10911"}); every such key is quoted. Input without bare keys is returned as is, without
// a copy. Anything else that is not JSON is left for the JSON decoder to reject.
func normalizeFastJSON(in []byte) []byte {
	var out []byte // nil until the first change
	var stack []byte
	expectKey := false
	for i := 0; i < len(in); {
		c := in[i]
		switch {
		case c == '"':
			j := skipJSONString(in, i)
			if out != nil {
				out = append(out, in[i:j]...)
			}
			i, expectKey = j, false
			continue
		case c == '{':
			stack, expectKey = append(stack, c), true
		case c == '[':
			stack, expectKey = append(stack, c), false
		case c == '}' || c == ']':
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
			expectKey = false
		case c == ',':
			expectKey = len(stack) > 0 && stack[len(stack)-1] == '{'
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
		default:
			if expectKey {
				j := i
				for j < len(in) && !isKeyEnd(in[j]) {
					j++
				}
				if out == nil {
					out = append(make([]byte, 0, len(in)+64), in[:i]...)
				}
				out = append(out, '"')
				out = append(out, in[i:j]...)
				out = append(out, '"')
				i, expectKey = j, false
				continue
			}
			expectKey = false
		}
		if out != nil {
			out = append(out, c)
		}
		i++
	}
	if out == nil {
		return in
	}
	return out
}

func isKeyEnd(c byte) bool {
	switch c {
	case ':', ',', '}', ']', '{', '[', '"', ' ', '\t', '\n', '\r':
		return true
	}
	return false
}

// skipJSONString returns the index just after the string starting at in[i] == '"', or len(in) if it never closes.
func skipJSONString(in []byte, i int) int {
	for j := i + 1; j < len(in); j++ {
		switch in[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(in)
}

// appendJSONString writes s as fastjson does: quotes, backslashes and control characters escaped, '/' left alone.
// asciiOnly additionally escapes every non-ASCII rune as \uXXXX UTF-16 units (fastjson's BrowserCompatible).
func appendJSONString(dst []byte, s string, asciiOnly bool) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c == '\n':
				dst = append(dst, '\\', 'n')
			case c == '\r':
				dst = append(dst, '\\', 'r')
			case c == '\t':
				dst = append(dst, '\\', 't')
			case c == '\b':
				dst = append(dst, '\\', 'b')
			case c == '\f':
				dst = append(dst, '\\', 'f')
			case c < 0x20:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if !asciiOnly && r != utf8.RuneError {
			dst = append(dst, s[i:i+size]...)
		} else {
			units := []rune{r}
			if r1, r2 := utf16.EncodeRune(r); r1 != utf8.RuneError {
				units = []rune{r1, r2}
			}
			for _, u := range units {
				dst = append(dst, '\\', 'u', hex[u>>12&0xf], hex[u>>8&0xf], hex[u>>4&0xf], hex[u&0xf])
			}
		}
		i += size
	}
	return append(dst, '"')
}

// jsonWriter writes NameServer bodies in one of the two dialects the NameServer uses.
type jsonWriter struct {
	buf []byte
	// standard selects standard JSON (quoted map keys, non-ASCII escaped: fastjson with QuoteFieldNames,
	// MapSortField and BrowserCompatible); otherwise legacy fastjson with bare numeric map keys.
	standard bool
}

func (w *jsonWriter) raw(s string) { w.buf = append(w.buf, s...) }
func (w *jsonWriter) str(s string) { w.buf = appendJSONString(w.buf, s, w.standard) }
func (w *jsonWriter) int(n int64)  { w.buf = strconv.AppendInt(w.buf, n, 10) }
func (w *jsonWriter) bool(b bool)  { w.buf = strconv.AppendBool(w.buf, b) }
func (w *jsonWriter) key(k string) { w.str(k); w.buf = append(w.buf, ':') }
func (w *jsonWriter) comma(first bool) {
	if !first {
		w.buf = append(w.buf, ',')
	}
}

// numKey writes a numeric map key: bare in legacy fastjson, quoted in standard JSON.
func (w *jsonWriter) numKey(n int64) {
	if w.standard {
		w.buf = append(w.buf, '"')
		w.int(n)
		w.buf = append(w.buf, '"', ':')
		return
	}
	w.int(n)
	w.buf = append(w.buf, ':')
}
