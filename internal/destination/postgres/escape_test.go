package postgres

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestBadEscape(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int
	}{
		{`{"a":"b"}`, -1},
		{`{"a":"\u0000"}`, 6},
		{`{"a":"\\u0000"}`, -1}, // an escaped backslash, then text
		{`{"a":"\\\u0000"}`, 8},
		{`"\ud83d\ude00"`, -1}, // a pair
		{`"\ud83d"`, 1},
		{`"\ud83dx"`, 1},
		{`"\ud83d\u0041"`, 1},
		{`"\ude00"`, 1},
		{`"\uD83D\uDE00\uDE00"`, 13},
		{`"\u00e9\n\t\"\/"`, -1},
		{`"\u12"`, -1},
		{`"\`, -1},
	} {
		if got := badEscape(c.in); got != c.want {
			t.Errorf("badEscape(%s) = %d, want %d", c.in, got, c.want)
		}
	}
}

func TestStorableJSON(t *testing.T) {
	for in, want := range map[string]string{
		`{"a":"x\u0000y"}`:         `{"a":"x\ufffdy"}`,
		`["\ud800","\udfff","ok"]`: `["\ufffd","\ufffd","ok"]`,
		`"\ud800\ud800\udc00"`:     `"\ufffd\ud800\udc00"`,
		"\"\xff\"":                 `"` + "\uFFFD" + `"`,
		`{"fine":"\u00e9"}`:        `{"fine":"\u00e9"}`,
	} {
		if got := storableJSON(in); got != want {
			t.Errorf("storableJSON(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestJSONLimitsOK(t *testing.T) {
	for in, want := range map[string]bool{
		`{"a":1e1000,"b":-1E-1000,"c":0.5}`:                           true,
		`[1e131071,9.9e131071,-1e-16383,0.1e-16382,12345.678e-16380]`: true,
		`[10e131071]`:                  false,
		`[1e131072]`:                   false,
		`[1.5e-16383]`:                 false,
		`[0.1e-16383]`:                 false,
		`[1e-16384]`:                   false,
		`[123e+999999999999999999999]`: false,
		`"1e9999"`:                     true, // a string
		`"\"1e9999"`:                   true,
		strings.Repeat("[", maxJSONNesting) + strings.Repeat("]", maxJSONNesting):     true,
		strings.Repeat("[", maxJSONNesting+1) + strings.Repeat("]", maxJSONNesting+1): false,
		"[" + strings.Repeat("9", maxIntDigits) + "]":                                 true,
		"[" + strings.Repeat("9", maxIntDigits+1) + "]":                               false,
		"[0." + strings.Repeat("9", maxScaleDigits) + "]":                             true,
		"[0." + strings.Repeat("9", maxScaleDigits+1) + "]":                           false,
	} {
		if got := jsonLimitsOK(in); got != want {
			t.Errorf("jsonLimitsOK(%.40s...) = %v, want %v", in, got, want)
		}
	}
}

// FuzzEscapeText: what is stored plus _tidemark_escaped gives back the
// exact original, and what is stored is text PostgreSQL accepts.
func FuzzEscapeText(f *testing.F) {
	for _, s := range []string{"", "plain", "a\x00b", "\xff\xfe", "é\x00\xc3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		stored, orig := escapeOne(t, "url", s, textOK, storableText)
		if strings.IndexByte(stored, 0) >= 0 || !utf8.ValidString(stored) {
			t.Fatalf("stored %q is not storable text", stored)
		}
		if orig != s {
			t.Fatalf("round trip of %q gave %q", s, orig)
		}
	})
}

// FuzzEscapeJSON: as FuzzEscapeText for JSON values; what is stored is
// still JSON when the original was, with no escape jsonb refuses.
func FuzzEscapeJSON(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":"\u0000"}`, `["\ud800"]`, `"\\u0000"`, "\"\xff\"", `{"a":[1,2,{"b":"\udc00\ud800\udc00"}]}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		stored, orig := escapeOne(t, "properties", s, jsonOK, storableJSON)
		if orig != s {
			t.Fatalf("round trip of %q gave %q", s, orig)
		}
		if !jsonOK(stored) {
			t.Fatalf("stored %q is not storable JSON", stored)
		}
		if json.Valid([]byte(s)) && !json.Valid([]byte(stored)) {
			t.Fatalf("stored %q of valid JSON %q is not JSON", stored, s)
		}
		if jsonOK(s) && stored != s {
			t.Fatalf("clean JSON %q stored as %q", s, stored)
		}
	})
}

// escapeOne escapes s as the COPY writer does and restores it from what
// would be stored and _tidemark_escaped.
func escapeOne(t *testing.T, col, s string, ok func(string) bool, storable func(string) string) (stored, orig string) {
	t.Helper()
	if ok(s) {
		return s, s
	}
	stored = storable(s)
	var esc map[string]string
	if err := json.Unmarshal([]byte(escapedJSON([]string{col}, []escaped{{0, s}})), &esc); err != nil {
		t.Fatal(err)
	}
	raw, err := base64.StdEncoding.DecodeString(esc[col])
	if err != nil {
		t.Fatal(err)
	}
	return stored, string(raw)
}
