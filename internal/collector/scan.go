package collector

import (
	"fmt"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// maxDepth bounds the nesting of arrays and objects. It is the limit of
// encoding/json, so that both agree on which bodies are JSON.
const maxDepth = 10000

// SyntaxError reports a body that is not JSON. Off is the byte offset (in the
// decompressed body) where the problem was found.
type SyntaxError struct {
	Off int
	Msg string
}

func (e *SyntaxError) Error() string { return fmt.Sprintf("invalid JSON at byte %d: %s", e.Off, e.Msg) }

// str is a JSON string or number found in the input: the bytes between the
// quotes (or of the number). set is false for an absent or null value.
type str struct {
	start, end int
	esc        bool // contains backslash escapes
	set        bool
}

// span is a raw JSON value in the input; end == 0 means absent.
type span struct{ start, end int }

// parser is a single-pass validating JSON scanner over one buffer. It records
// the first syntax error and then does nothing (callers check err at loop
// boundaries). Invalid UTF-8 inside strings is not a syntax error, as for
// encoding/json; it sets badUTF8 so that the caller can reject the event and
// name the field.
type parser struct {
	b       []byte
	i       int
	depth   int
	err     *SyntaxError
	badUTF8 bool
	lastKey str    // the member name key() scanned last
	keyBuf  []byte // unescaped key scratch
}

func (p *parser) reset(b []byte) {
	p.b, p.i, p.depth, p.err, p.badUTF8 = b, 0, 0, nil, false
}

func (p *parser) fail(off int, format string, args ...any) {
	if p.err == nil {
		p.err = &SyntaxError{Off: off, Msg: fmt.Sprintf(format, args...)}
	}
	p.i = len(p.b) // stop every loop
}

func (p *parser) failChar(what string) {
	if p.i >= len(p.b) {
		p.fail(len(p.b), "unexpected end of input")
		return
	}
	p.fail(p.i, "invalid character %s %s", quoteChar(p.b[p.i]), what)
}

func quoteChar(c byte) string {
	if c == '\'' {
		return `'\''`
	}
	if c == '"' {
		return `'"'`
	}
	if c >= 0x20 && c < utf8.RuneSelf {
		return "'" + string(rune(c)) + "'"
	}
	return fmt.Sprintf("0x%02x", c)
}

func (p *parser) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// peek skips white space and returns the next byte, or 0 at the end.
func (p *parser) peek() byte {
	p.ws()
	if p.i < len(p.b) {
		return p.b[p.i]
	}
	return 0
}

// plain marks the bytes that need no attention inside a string.
var plain = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// str scans the string starting at p.i (which must be a quote).
func (p *parser) str() str {
	b := p.b
	i := p.i + 1
	s := str{start: i, set: true}
	for {
		for i < len(b) && plain[b[i]] {
			i++
		}
		if i >= len(b) {
			p.fail(len(b), "unexpected end of input in string")
			return str{}
		}
		switch c := b[i]; {
		case c == '"':
			s.end = i
			p.i = i + 1
			return s
		case c == '\\':
			s.esc = true
			if i+1 >= len(b) {
				p.fail(len(b), "unexpected end of input in string escape")
				return str{}
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) {
					p.fail(len(b), "unexpected end of input in string escape")
					return str{}
				}
				for j := i + 2; j < i+6; j++ {
					if !isHex(b[j]) {
						p.fail(j, "invalid character %s in \\u escape", quoteChar(b[j]))
						return str{}
					}
				}
				i += 6
			default:
				p.fail(i+1, "invalid character %s in string escape", quoteChar(b[i+1]))
				return str{}
			}
		case c < 0x20:
			p.fail(i, "invalid control character %s in string", quoteChar(c))
			return str{}
		default: // non-ASCII
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size == 1 {
				p.badUTF8 = true
			}
			i += size
		}
	}
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// number scans a number starting at p.i and returns it as a str.
func (p *parser) number() str {
	b := p.b
	i := p.i
	s := str{start: i, set: true}
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	default:
		p.i = i
		p.failChar("in numeric literal")
		return str{}
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || !isDigit(b[i]) {
			p.i = i
			p.failChar("after decimal point in numeric literal")
			return str{}
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || !isDigit(b[i]) {
			p.i = i
			p.failChar("in exponent of numeric literal")
			return str{}
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	s.end = i
	p.i = i
	return s
}

func (p *parser) literal(lit string) {
	for j := 0; j < len(lit); j++ {
		if p.i >= len(p.b) || p.b[p.i] != lit[j] {
			p.failChar("in literal " + lit)
			return
		}
		p.i++
	}
}

// value skips any JSON value, validating it.
func (p *parser) value() {
	switch c := p.peek(); {
	case c == '{':
		for ok := p.objectBegin(); ok; ok = p.objectNext() {
			p.key()
			p.value()
		}
	case c == '[':
		for ok := p.arrayBegin(); ok; ok = p.arrayNext() {
			p.value()
		}
	case c == '"':
		p.str()
	case c == 't':
		p.literal("true")
	case c == 'f':
		p.literal("false")
	case c == 'n':
		p.literal("null")
	case c == '-' || isDigit(c):
		p.number()
	default:
		p.failChar("looking for beginning of value")
	}
}

// objectBegin consumes the '{' at p.i and reports whether a member follows
// (if not, it consumes the closing '}' too).
func (p *parser) objectBegin() bool { return p.begin('}') }

// arrayBegin is objectBegin for '[' ... ']'.
func (p *parser) arrayBegin() bool { return p.begin(']') }

// begin consumes a container's opening byte and reports whether an element
// follows; if the container is empty it consumes closing too.
func (p *parser) begin(closing byte) bool {
	if p.err != nil {
		return false
	}
	p.depth++
	if p.depth > maxDepth {
		p.fail(p.i, "exceeded max depth %d", maxDepth)
		return false
	}
	p.i++
	if p.peek() == closing {
		p.i++
		p.depth--
		return false
	}
	return p.err == nil
}

// next consumes a ',' (true) or the container's closing byte (false);
// anything else is an error described as coming after what.
func (p *parser) next(closing byte, what string) bool {
	switch p.peek() {
	case ',':
		p.i++
		return p.err == nil
	case closing:
		p.i++
		p.depth--
		return false
	}
	p.failChar(what)
	return false
}

// objectNext consumes a ',' (true) or the closing '}' (false).
func (p *parser) objectNext() bool { return p.next('}', "after object key:value pair") }

// key scans a member name and the ':' after it, and returns the name's bytes,
// unescaped (the result is only valid until the next call).
func (p *parser) key() []byte {
	if p.peek() != '"' {
		p.failChar("looking for beginning of object key string")
		return nil
	}
	s := p.str()
	p.lastKey = s
	if p.peek() != ':' {
		p.failChar("after object key")
		return nil
	}
	p.i++
	if !s.esc {
		return p.b[s.start:s.end]
	}
	p.keyBuf = appendUnescaped(p.keyBuf[:0], p.b[s.start:s.end])
	return p.keyBuf
}

// arrayNext consumes a ',' (true) or the closing ']' (false).
func (p *parser) arrayNext() bool { return p.next(']', "after array element") }

// pageKey maps the fields tidemark extracts from a page object (or page
// properties) to their index.
func pageKey(k []byte) int {
	switch string(k) {
	case "url":
		return 0
	case "path":
		return 1
	case "referrer":
		return 2
	case "title":
		return 3
	}
	return -1
}

// pageObject scans the object at p.i and records its string members url,
// path, referrer and title in out.
func (p *parser) pageObject(out *[4]str) {
	for ok := p.objectBegin(); ok; ok = p.objectNext() {
		if j := pageKey(p.key()); j >= 0 && p.peek() == '"' {
			out[j] = p.str()
			continue
		}
		p.value()
	}
}

// appendUnescaped appends the JSON string content s (already validated by
// str) to dst with escapes resolved, the way encoding/json does (an unpaired
// surrogate becomes U+FFFD).
func appendUnescaped(dst, s []byte) []byte {
	for i := 0; i < len(s); {
		if s[i] != '\\' {
			j := i + 1
			for j < len(s) && s[j] != '\\' {
				j++
			}
			dst = append(dst, s[i:j]...)
			i = j
			continue
		}
		if i+1 >= len(s) {
			break
		}
		c := s[i+1]
		i += 2
		switch c {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r := hex4(s[i:])
			i += 4
			if utf16.IsSurrogate(r) {
				r2 := rune(-1)
				if i+6 <= len(s) && s[i] == '\\' && s[i+1] == 'u' {
					r2 = hex4(s[i+2:])
				}
				if dec := utf16.DecodeRune(r, r2); dec != unicode.ReplacementChar {
					i += 6
					r = dec
				} else {
					r = unicode.ReplacementChar
				}
			}
			dst = utf8.AppendRune(dst, r)
		default: // '"', '\\', '/'
			dst = append(dst, c)
		}
	}
	return dst
}

func hex4(b []byte) rune {
	if len(b) < 4 {
		return unicode.ReplacementChar
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return unicode.ReplacementChar
		}
		r = r<<4 | rune(c)
	}
	return r
}
