package config

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Duration is a time.Duration written as "30m", "1s".
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String formats d without zero trailing units: "168h", "1h30m", "1.5s".
func (d Duration) String() string {
	s := time.Duration(d).String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// MarshalText implements encoding.TextMarshaler (JSON and other encoders).
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := parseDuration(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// UnmarshalYAML implements yaml.Unmarshaler. It accepts only strings with a
// unit: a bare number is ambiguous (seconds? minutes?) and is rejected.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("expected a duration such as \"30s\", got %s", kindName(n))
	}
	switch n.ShortTag() {
	case "!!int", "!!float":
		return fmt.Errorf("a duration needs a unit, e.g. \"30s\" or \"5m\"; got bare number %s", n.Value)
	case "!!str":
	default:
		return fmt.Errorf("expected a duration such as \"30s\", got %s", kindName(n))
	}
	return d.UnmarshalText([]byte(n.Value))
}

func parseDuration(s string) (Duration, error) {
	v, err := time.ParseDuration(strings.TrimSpace(s))
	if err == nil {
		return Duration(v), nil
	}
	if _, ferr := strconv.ParseFloat(strings.TrimSpace(s), 64); ferr == nil {
		return 0, fmt.Errorf("a duration needs a unit, e.g. \"30s\" or \"5m\"; got bare number %s", s)
	}
	return 0, fmt.Errorf("invalid duration %q: want a number and a unit (ns, us, ms, s, m, h), e.g. \"90s\" or \"168h\"", s)
}

// ByteSize is a size written as a number of bytes or with a unit: "4MiB", "32KiB".
type ByteSize int64

// Size units. KB, MB, ... are powers of 1000; KiB, MiB, ... powers of 1024.
const (
	B   ByteSize = 1
	KB           = 1000 * B
	MB           = 1000 * KB
	GB           = 1000 * MB
	TB           = 1000 * GB
	KiB          = 1024 * B
	MiB          = 1024 * KiB
	GiB          = 1024 * MiB
	TiB          = 1024 * GiB
)

var byteUnits = []struct {
	name string
	size ByteSize
}{
	// Largest first: String uses the first that divides exactly.
	{"TiB", TiB}, {"TB", TB}, {"GiB", GiB}, {"GB", GB},
	{"MiB", MiB}, {"MB", MB}, {"KiB", KiB}, {"KB", KB},
	{"B", B},
}

const unitsHelp = "use B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024)"

// String formats b with the largest unit that divides it exactly: "64MiB",
// "4MB", "1001B".
func (b ByteSize) String() string {
	if b == 0 {
		return "0B"
	}
	for _, u := range byteUnits {
		if b%u.size == 0 {
			return strconv.FormatInt(int64(b/u.size), 10) + u.name
		}
	}
	return strconv.FormatInt(int64(b), 10) + "B" // unreachable: B divides everything
}

// ParseByteSize parses "1048576", "1MiB", "1 MB" (units are case-insensitive).
func ParseByteSize(s string) (ByteSize, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '-' || t[i] == '+' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.TrimSpace(t[i:])
	if num == "" {
		return 0, fmt.Errorf("invalid size %q: want a number of bytes or a number and a unit, e.g. \"64MiB\"", s)
	}
	if strings.HasPrefix(num, "-") {
		return 0, fmt.Errorf("invalid size %q: must not be negative", s)
	}
	if strings.Contains(num, ".") {
		return 0, fmt.Errorf("invalid size %q: want a whole number, e.g. \"1536MiB\" rather than \"1.5GiB\"", s)
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil {
		if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
			return 0, fmt.Errorf("invalid size %q: too large", s)
		}
		return 0, fmt.Errorf("invalid size %q: want a number of bytes or a number and a unit, e.g. \"64MiB\"", s)
	}
	mult := B
	if unit != "" {
		mult = 0
		for _, u := range byteUnits {
			if strings.EqualFold(unit, u.name) {
				mult = u.size
				break
			}
		}
		if mult == 0 {
			return 0, fmt.Errorf("invalid size %q: unknown unit %q; %s", s, unit, unitsHelp)
		}
	}
	if n > math.MaxInt64/int64(mult) {
		return 0, fmt.Errorf("invalid size %q: too large", s)
	}
	return ByteSize(n) * mult, nil
}

// MarshalText implements encoding.TextMarshaler.
func (b ByteSize) MarshalText() ([]byte, error) { return []byte(b.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (b *ByteSize) UnmarshalText(t []byte) error {
	v, err := ParseByteSize(string(t))
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (b ByteSize) MarshalYAML() (any, error) { return b.String(), nil }

// UnmarshalYAML implements yaml.Unmarshaler: an integer is a number of bytes,
// a string may carry a unit.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("expected a size such as 4096 or \"64MiB\", got %s", kindName(n))
	}
	switch n.ShortTag() {
	case "!!int":
		var v int64
		if err := n.Decode(&v); err != nil {
			return fmt.Errorf("invalid size %s: too large", n.Value)
		}
		if v < 0 {
			return fmt.Errorf("invalid size %s: must not be negative", n.Value)
		}
		*b = ByteSize(v)
		return nil
	case "!!float":
		if strings.Trim(n.Value, "0123456789") == "" {
			return fmt.Errorf("invalid size %s: too large", n.Value) // an integer too large for int64
		}
		return fmt.Errorf("invalid size %s: want a whole number, e.g. \"1536MiB\" rather than \"1.5GiB\"", n.Value)
	case "!!str":
		return b.UnmarshalText([]byte(n.Value))
	}
	return fmt.Errorf("expected a size such as 4096 or \"64MiB\", got %s", kindName(n))
}

// Secret is a credential (write key). It prints as "[redacted]".
type Secret string

const redacted = "[redacted]"

// Reveal returns the secret's value. Call it only where the value is used
// (comparing a presented key), never to log it.
func (s Secret) Reveal() string { return string(s) }

func (s Secret) String() string { return redacted }

// GoString implements fmt.GoStringer (%#v).
func (s Secret) GoString() string { return `config.Secret("` + redacted + `")` }

// Format implements fmt.Formatter so that no verb (%d, %x, %q ...) can print
// the value.
func (s Secret) Format(f fmt.State, verb rune) {
	switch {
	case verb == 'v' && f.Flag('#'):
		fmt.Fprint(f, s.GoString())
	case verb == 'q':
		fmt.Fprint(f, strconv.Quote(redacted))
	default:
		fmt.Fprint(f, redacted)
	}
}

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalText implements encoding.TextMarshaler.
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// MarshalJSON implements json.Marshaler.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(redacted) }

// MarshalYAML implements yaml.Marshaler.
func (s Secret) MarshalYAML() (any, error) { return redacted, nil }

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.DocumentNode:
		return "a document"
	}
	switch n.ShortTag() {
	case "!!null":
		return "null"
	case "!!bool":
		return "boolean " + n.Value
	case "!!int", "!!float":
		return "number " + n.Value
	case "!!str":
		return "string " + strconv.Quote(n.Value)
	}
	return n.ShortTag() + " " + strconv.Quote(n.Value)
}
