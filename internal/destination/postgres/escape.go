package postgres

import (
	"encoding/base64"
	"strings"
	"unicode/utf8"
)

// Values PostgreSQL refuses are stored losslessly (see the package
// documentation): the column gets the nearest value it accepts (or NULL
// when there is none) and _tidemark_escaped maps the column's name to the
// base64 of the original bytes. The checks here are what a clean row
// pays: a byte search per text value, and per JSON value a UTF-8 check and
// a search for \u escapes. What they cannot see cheaply (JSON numbers
// beyond numeric's range, nesting deeper than PostgreSQL parses) PostgreSQL
// reports, and the fallback in write.go escapes the value it names.

// textOK reports whether PostgreSQL stores s in a text column as it is:
// valid UTF-8 without NUL.
func textOK(s string) bool { return strings.IndexByte(s, 0) < 0 && utf8.ValidString(s) }

// storableText returns s with each NUL and each invalid UTF-8 sequence
// replaced by U+FFFD.
func storableText(s string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

// jsonOK reports whether PostgreSQL's jsonb accepts the escapes and
// encoding of the JSON text s: valid UTF-8, no \u0000 and no lone
// surrogate escape.
func jsonOK(s string) bool {
	return utf8.ValidString(s) && (!strings.Contains(s, `\u`) || badEscape(s) < 0)
}

// badEscape returns the offset of the first \u escape of s that jsonb
// refuses (\u0000, a high surrogate not followed by a low one, a low
// surrogate alone), or -1. Every backslash of valid JSON starts an escape
// inside a string, so jumping from one to the next finds every escape.
func badEscape(s string) int {
	for i := 0; ; {
		j := strings.IndexByte(s[i:], '\\')
		if j < 0 || i+j+1 >= len(s) {
			return -1
		}
		i += j
		if s[i+1] != 'u' {
			i += 2
			continue
		}
		r, ok := hex4(s, i+2)
		switch {
		case !ok:
			return -1 // not valid JSON; PostgreSQL says what is wrong
		case r == 0:
			return i
		case r >= 0xD800 && r < 0xDC00: // high surrogate: a low one must follow
			lo, ok := rune(0), false
			if i+7 < len(s) && s[i+6] == '\\' && s[i+7] == 'u' {
				lo, ok = hex4(s, i+8)
			}
			if !ok || lo < 0xDC00 || lo > 0xDFFF {
				return i
			}
			i += 12
		case r >= 0xDC00 && r <= 0xDFFF:
			return i
		default:
			i += 6
		}
	}
}

// hex4 decodes the 4 hex digits at s[i:].
func hex4(s string, i int) (rune, bool) {
	if i+4 > len(s) {
		return 0, false
	}
	var r rune
	for _, c := range []byte(s[i : i+4]) {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// storableJSON returns the JSON text s with invalid UTF-8, \u0000 and lone
// surrogate escapes replaced by U+FFFD: the same JSON structure, which
// jsonb accepts unless a number or the nesting is beyond its limits.
func storableJSON(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	var b strings.Builder
	for {
		i := badEscape(s)
		if i < 0 {
			break
		}
		b.WriteString(s[:i])
		b.WriteString(`\ufffd`)
		s = s[i+6:]
	}
	if b.Len() == 0 {
		return s
	}
	b.WriteString(s)
	return b.String()
}

// Limits of PostgreSQL's numeric (numeric.c), in which jsonb keeps
// numbers, measured on PostgreSQL 15: a number d.ddd×10^E needs E < 131072
// and at most 16383 digits after the point (1e131071 and 1e-16383 are
// stored, 10e131071 and 1.5e-16383 refused). Its JSON parser's nesting is
// bounded by max_stack_depth (14538 levels at the default 2MB); the
// collector accepts 10000, which is what the check flags beyond.
const (
	maxIntDigits   = 131072
	maxScaleDigits = 16383
	maxJSONNesting = 10000
)

// jsonLimitsOK reports whether every number of the JSON text s fits
// PostgreSQL's numeric and its nesting is within maxJSONNesting. It reads
// all of s: the fallback's check, not the clean rows'.
func jsonLimitsOK(s string) bool {
	depth := 0
	for i := 0; i < len(s); {
		switch c := s[i]; {
		case c == '"':
			i++
			for i < len(s) {
				j := strings.IndexAny(s[i:], `"\`)
				if j < 0 {
					return true // not JSON: PostgreSQL says what is wrong
				}
				i += j
				if s[i] == '"' {
					i++
					break
				}
				i += 2
			}
		case c == '[' || c == '{':
			depth++
			if depth > maxJSONNesting {
				return false
			}
			i++
		case c == ']' || c == '}':
			depth--
			i++
		case c == '-' || c >= '0' && c <= '9':
			n, ok := numberOK(s[i:])
			if !ok {
				return false
			}
			i += n
		default:
			i++
		}
	}
	return true
}

// numberOK scans the JSON number at the start of s and reports its length
// and whether numeric holds it.
func numberOK(s string) (int, bool) {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	start := i
	for i < len(s) && s[i] == '0' {
		i++
	}
	lead := i
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	intDigits := i - lead
	frac := 0
	if i < len(s) && s[i] == '.' {
		i++
		f := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		frac = i - f
	}
	if i == start {
		return max(i, 1), true // not a number: not ours to judge
	}
	exp := 0
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		neg := false
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			neg = s[i] == '-'
			i++
		}
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			if exp < 1<<30 {
				exp = exp*10 + int(s[i]-'0')
			}
			i++
		}
		if neg {
			exp = -exp
		}
	}
	return i, intDigits+exp <= maxIntDigits && frac-exp <= maxScaleDigits
}

// escapedJSON returns the _tidemark_escaped object of a row's altered
// values: {"column": "base64 of the original bytes", ...}.
func escapedJSON(cols []string, esc []escaped) string {
	var b strings.Builder
	b.WriteByte('{')
	for i, e := range esc {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('"')
		b.WriteString(cols[e.col]) // column names need no JSON escaping
		b.WriteString(`":"`)
		b.WriteString(base64.StdEncoding.EncodeToString([]byte(e.orig)))
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}
