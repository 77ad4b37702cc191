package remoting

import (
	"bytes"
	"math"
	"slices"
	"unicode/utf8"
)

// fastJSONHeader decodes the JSON headers that RocketMQ peers actually send — a flat object of numbers, strings
// (escapes included, but for surrogates) and an extFields object of strings — without reflection. It reports false
// for anything else (surrogate escapes, nested values, unusual numbers, keys that encoding/json would match
// case-insensitively), and the caller
// falls back to the general decoder, which also produces the error messages. FuzzJSONHeaderFastPath checks that the
// two agree.
func fastJSONHeader(data []byte, c *Command) bool {
	ok, _ := fastJSONHeaderKeep(data, c, nil)
	return ok
}

// fastJSONHeaderKeep is fastJSONHeader that, with keep, reads of the extFields only those keep names for the
// command's code, and skips the others' values unread: they are scanned to their end, not unescaped or checked.
// keep returning nil, or extFields that come before the code, mean all of them; partial reports whether any were
// skipped.
func fastJSONHeaderKeep(data []byte, c *Command, keep func(code int32) []string) (ok, partial bool) {
	p := headerParser{data: data}
	if !p.consume('{') {
		return false, false
	}
	var h Command
	codeSeen := false
	if p.consume('}') {
		return p.end() && p.commit(&h, c), false
	}
	for {
		// Keys are compared as the input's bytes, not copied: a key with escapes is left to the general decoder.
		key, ok := p.plainStr()
		if !ok || !p.consume(':') {
			return false, false
		}
		switch string(key) {
		case "code", "version", "opaque", "flag":
			n, ok := p.int32()
			if !ok {
				return false, false
			}
			switch string(key) {
			case "code":
				h.Code, codeSeen = n, true
			case "version":
				h.Version = n
			case "opaque":
				h.Opaque = n
			case "flag":
				h.Flag = n
			}
		case "language":
			if p.peek() == '"' {
				name, ok := p.plainStr()
				if !ok {
					return false, false
				}
				h.Language = ParseLanguage(string(name))
			} else {
				n, ok := p.int32()
				if !ok || n < 0 || n > 255 {
					return false, false
				}
				h.Language = LanguageCode(n)
			}
		case "remark":
			if p.literal("null") {
				h.Remark = ""
				break
			}
			s, ok := p.str()
			if !ok {
				return false, false
			}
			h.Remark = s
		case "extFields":
			if p.literal("null") {
				h.ExtFields = nil
				break
			}
			// A repeated extFields key merges into the first, as encoding/json decodes into the same map, which
			// extFields makes with the first key it stores.
			p.keep, p.partial = nil, false
			if keep != nil && codeSeen {
				p.keep = keep(h.Code)
				p.partial = p.keep != nil
				partial = partial || p.partial
			}
			if !p.extFields(&h.ExtFields) {
				return false, false
			}
		default:
			for _, known := range [...]string{"code", "version", "opaque", "flag", "language", "remark", "extFields"} {
				if bytes.EqualFold(key, []byte(known)) {
					return false, false
				}
			}
			if !p.scalar() {
				return false, false
			}
		}
		if p.consume(',') {
			continue
		}
		if p.consume('}') {
			return p.end() && p.commit(&h, c), partial
		}
		return false, false
	}
}

type headerParser struct {
	data    []byte
	pos     int
	keep    []string // with partial: the only extFields read
	partial bool
}

func (p *headerParser) commit(h, c *Command) bool {
	if len(h.ExtFields) == 0 {
		h.ExtFields = nil
	}
	c.Code, c.Language, c.Version, c.Opaque, c.Flag, c.Remark, c.ExtFields = h.Code, h.Language, h.Version, h.Opaque, h.Flag, h.Remark, h.ExtFields
	return true
}

func (p *headerParser) skipSpace() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

func (p *headerParser) peek() byte {
	p.skipSpace()
	if p.pos < len(p.data) {
		return p.data[p.pos]
	}
	return 0
}

func (p *headerParser) consume(c byte) bool {
	if p.peek() == c {
		p.pos++
		return true
	}
	return false
}

func (p *headerParser) end() bool {
	p.skipSpace()
	return p.pos == len(p.data)
}

func (p *headerParser) literal(lit string) bool {
	p.skipSpace()
	if bytes.HasPrefix(p.data[p.pos:], []byte(lit)) {
		p.pos += len(lit)
		return true
	}
	return false
}

// str reads a string without control characters or invalid UTF-8.
func (p *headerParser) str() (string, bool) {
	s, ok := p.rawStr()
	if s == nil {
		return "", false
	}
	return string(s), ok
}

// skipStr passes over a string str would read, without copying it.
func (p *headerParser) skipStr() bool {
	s, ok := p.rawStr()
	return s != nil && ok
}

// rawStr reads a string as the input's bytes when it has no escapes, or decoded into a new slice; a nil slice
// means the string is not one str reads.
func (p *headerParser) rawStr() ([]byte, bool) {
	if !p.consume('"') {
		return nil, false
	}
	start := p.pos
	for p.pos < len(p.data) {
		switch c := p.data[p.pos]; {
		case c == '"':
			s := p.data[start:p.pos]
			p.pos++
			if !utf8.Valid(s) {
				return nil, false
			}
			return s, true
		case c == '\\':
			// Escapes are common: every send's properties separate their pairs with \u0001 and \u0002.
			return p.escaped(start)
		case c < 0x20:
			return nil, false
		}
		p.pos++
	}
	return nil, false
}

// escaped finishes a string holding escapes, from its start: the simple escapes and \u escapes outside the
// surrogate range, which decode one way only. Surrogates (where encoding/json substitutes U+FFFD for a lone one)
// and invalid UTF-8 report false, for the general decoder.
func (p *headerParser) escaped(start int) ([]byte, bool) {
	out := make([]byte, 0, p.pos-start+16)
	out = append(out, p.data[start:p.pos]...)
	for p.pos < len(p.data) {
		c := p.data[p.pos]
		switch {
		case c == '"':
			p.pos++
			if !utf8.Valid(out) {
				return nil, false
			}
			return out, true
		case c < 0x20:
			return nil, false
		case c != '\\':
			out = append(out, c)
			p.pos++
			continue
		}
		if p.pos+1 >= len(p.data) {
			return nil, false
		}
		e := p.data[p.pos+1]
		p.pos += 2
		switch e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			if p.pos+4 > len(p.data) {
				return nil, false
			}
			var r rune
			for _, h := range p.data[p.pos : p.pos+4] {
				switch {
				case h >= '0' && h <= '9':
					r = r<<4 | rune(h-'0')
				case h >= 'a' && h <= 'f':
					r = r<<4 | rune(h-'a'+10)
				case h >= 'A' && h <= 'F':
					r = r<<4 | rune(h-'A'+10)
				default:
					return nil, false
				}
			}
			if r >= 0xD800 && r <= 0xDFFF {
				return nil, false
			}
			p.pos += 4
			out = utf8.AppendRune(out, r)
		default:
			return nil, false
		}
	}
	return nil, false
}

// number reads a JSON integer: -?(0|[1-9][0-9]*), no fraction or exponent, as the input's bytes.
func (p *headerParser) number() ([]byte, bool) {
	p.skipSpace()
	start := p.pos
	if p.pos < len(p.data) && p.data[p.pos] == '-' {
		p.pos++
	}
	digits := p.pos
	for p.pos < len(p.data) && p.data[p.pos] >= '0' && p.data[p.pos] <= '9' {
		p.pos++
	}
	n := p.pos - digits
	if n == 0 || n > 1 && p.data[digits] == '0' {
		return nil, false
	}
	if p.pos < len(p.data) {
		switch p.data[p.pos] {
		case '.', 'e', 'E':
			return nil, false
		}
	}
	return p.data[start:p.pos], true
}

// int32 reads a number that fits an int32.
func (p *headerParser) int32() (int32, bool) {
	s, ok := p.number()
	if !ok {
		return 0, false
	}
	neg := s[0] == '-'
	if neg {
		s = s[1:]
	}
	if len(s) > 10 {
		return 0, false
	}
	var n int64
	for _, d := range s {
		n = n*10 + int64(d-'0')
	}
	if neg {
		n = -n
	}
	if n < math.MinInt32 || n > math.MaxInt32 {
		return 0, false
	}
	return int32(n), true
}

// scalar skips a plain string, an integer, true, false or null.
func (p *headerParser) scalar() bool {
	switch p.peek() {
	case '"':
		return p.skipStr()
	case 't':
		return p.literal("true")
	case 'f':
		return p.literal("false")
	case 'n':
		return p.literal("null")
	}
	_, ok := p.number()
	return ok
}

// extFields reads an object of plain strings (or nulls, which remove a key) into *ext, made with the first key
// stored; when partial, only the keys named in keep.
func (p *headerParser) extFields(ext *map[string]string) bool {
	if !p.consume('{') {
		return false
	}
	if p.consume('}') {
		return true
	}
	for {
		var key string
		if p.partial {
			raw, ok := p.plainStr()
			if !ok || !p.consume(':') {
				return false
			}
			if !slices.Contains(p.keep, string(raw)) { // compared without a copy
				if !p.skipValue() {
					return false
				}
				goto next
			}
			key = string(raw)
		} else {
			var ok bool
			if key, ok = p.str(); !ok || !p.consume(':') {
				return false
			}
		}
		switch p.peek() {
		case '"':
			v, ok := p.str()
			if !ok {
				return false
			}
			if *ext == nil {
				*ext = map[string]string{}
			}
			(*ext)[key] = v
		case 'n':
			if !p.literal("null") {
				return false
			}
			delete(*ext, key)
		default:
			return false // numbers and booleans: rare, left to the general decoder
		}
	next:
		if p.consume(',') {
			continue
		}
		return p.consume('}')
	}
}

// plainStr reads a string of printable ASCII without escapes, as the bytes of the input: extFields keys, whose
// names are Java identifiers. Anything else reports false, for the general decoder.
func (p *headerParser) plainStr() ([]byte, bool) {
	if !p.consume('"') {
		return nil, false
	}
	start := p.pos
	for p.pos < len(p.data) {
		switch c := p.data[p.pos]; {
		case c == '"':
			p.pos++
			return p.data[start : p.pos-1], true
		case c == '\\' || c < 0x20 || c >= 0x80:
			return nil, false
		}
		p.pos++
	}
	return nil, false
}

// skipValue passes over an extFields value without reading it: a string (its escapes skipped, not decoded or
// checked) or null.
func (p *headerParser) skipValue() bool {
	if p.literal("null") {
		return true
	}
	if !p.consume('"') {
		return false
	}
	for p.pos < len(p.data) {
		switch c := p.data[p.pos]; {
		case c == '"':
			p.pos++
			return true
		case c == '\\':
			p.pos += 2
			continue
		case c < 0x20:
			return false
		}
		p.pos++
	}
	return false
}
