package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// FieldError is one problem with one configuration key.
type FieldError struct {
	File string // the config file; empty when the Config did not come from a file
	Line int    // 1-based line in File; 0 when unknown
	Path string // key path as written in YAML: orgs[0].destinations[1].flush.max_age; empty for the whole file
	Msg  string // the problem; never contains a write key
}

// Error formats e as "file:line: path: problem", leaving out what is unknown.
func (e *FieldError) Error() string {
	var b strings.Builder
	switch {
	case e.File != "" && e.Line > 0:
		fmt.Fprintf(&b, "%s:%d: ", e.File, e.Line)
	case e.File != "":
		b.WriteString(e.File + ": ")
	case e.Line > 0:
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Path != "" {
		b.WriteString(e.Path + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

func joinErrs(errs []*FieldError) error {
	if len(errs) == 0 {
		return nil
	}
	all := make([]error, len(errs))
	for i, e := range errs {
		all[i] = e
	}
	return errors.Join(all...)
}

// Load reads the YAML file at path, decodes it strictly over Default(),
// expands ${VAR} in values and validates the result. The error, when not nil,
// reports every problem found (see FieldError); a config without orgs is
// valid (see WithDefaultOrg).
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load config: %w", err)
	}
	return parse(path, data, os.LookupEnv)
}

var yamlLineErr = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntaxError turns a yaml.v3 parse error into a FieldError with its line.
func syntaxError(file string, err error) *FieldError {
	msg := err.Error()
	if m := yamlLineErr.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &FieldError{File: file, Line: line, Msg: "invalid YAML: " + m[2]}
	}
	return &FieldError{File: file, Msg: "invalid YAML: " + strings.TrimPrefix(msg, "yaml: ")}
}

func parse(file string, data []byte, lookup func(string) (string, bool)) (*Config, error) {
	cfg := Default()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil && err != io.EOF {
		return nil, joinErrs([]*FieldError{syntaxError(file, err)})
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == io.EOF:
	case err != nil:
		return nil, joinErrs([]*FieldError{syntaxError(file, err)})
	default:
		return nil, joinErrs([]*FieldError{{File: file, Line: extra.Line,
			Msg: "a config file holds one YAML document; remove the second one (or the \"---\" line)"}})
	}

	d := &decoder{lookup: lookup, lines: map[string]int{}, hidden: map[*yaml.Node]string{}, expanded: map[string]string{}}
	if len(doc.Content) > 0 {
		d.decode(doc.Content[0], reflect.ValueOf(cfg).Elem(), "")
	}
	cfg.fillFormatDefaults()

	errs := d.errs
	for _, e := range cfg.validate(lookup) {
		if d.failedAt(e.Path) {
			continue // already reported when decoding; the value is a default, not the user's
		}
		e.Line = d.lineOf(e.Path)
		if val, ok := d.expanded[e.Path]; ok {
			e.Msg = hideQuoted(hideValue(e.Msg, val, hiddenEnv), val)
		}
		errs = append(errs, e)
	}
	for _, e := range errs {
		e.File = file
	}
	sort.SliceStable(errs, func(i, j int) bool {
		li, lj := errs[i].Line, errs[j].Line
		return li != 0 && (lj == 0 || li < lj)
	})
	if err := joinErrs(errs); err != nil {
		return nil, err
	}
	return cfg, nil
}

// fillFormatDefaults sets the format-dependent defaults of destinations that
// the file left out: parquet, compressed with zstd; ndjson is always gzip.
func (c *Config) fillFormatDefaults() {
	for i := range c.Orgs {
		for j := range c.Orgs[i].Destinations {
			d := &c.Orgs[i].Destinations[j]
			if d.Format == "" {
				d.Format = FormatParquet
			}
			if d.Compression == "" {
				switch d.Format {
				case FormatParquet:
					d.Compression = "zstd"
				case FormatNDJSON:
					d.Compression = "gzip"
				}
			}
		}
	}
}

// decoder decodes a yaml.Node tree into Config by reflection. It replaces
// yaml.v3's own decoding (Decoder.KnownFields) because that reports neither
// key paths nor more than one custom-type error, cannot tell an absent key
// from an explicit zero inside list elements (needed for per-destination
// defaults), and Node.Decode ignores KnownFields altogether.
type decoder struct {
	lookup func(string) (string, bool)
	errs   []*FieldError
	failed []string       // paths with decode errors
	lines  map[string]int // path -> line of its key (or list element)
	// hidden: scalar nodes whose value no error may quote (secrets and
	// values expanded from ${VAR}), each with the words that replace it.
	hidden map[*yaml.Node]string
	// expanded: paths whose value came from ${VAR}, with the value, so that
	// Validate's problems at those paths are stripped of it too.
	expanded map[string]string
}

// Words that stand for a value an error must not quote.
const (
	hiddenSecret = "(a secret, not shown)"
	hiddenEnv    = "(a value from the environment, not shown)"
)

func (d *decoder) fail(n *yaml.Node, path, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if words, ok := d.hidden[n]; ok {
		msg = hideValue(msg, n.Value, words)
	}
	d.errs = append(d.errs, &FieldError{Line: n.Line, Path: path, Msg: msg})
	d.failed = append(d.failed, path)
}

// hideValue replaces val in msg, quoted or not, by words. Error messages
// quote a bad value so that the user can find it; a secret, or a value
// taken from the environment (which may hold one: "write_keys: ${KEYS}"
// given a string, a mistyped variable name), must never reach a log.
func hideValue(msg, val, words string) string {
	if val == "" {
		return msg
	}
	msg = strings.ReplaceAll(msg, strconv.Quote(val), words)
	return strings.ReplaceAll(msg, val, words)
}

var quoted = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)

// hideQuoted replaces every quoted string of msg that holds a part of val
// (Validate quotes parts of a value too: the port of listen), but not the
// one- and two-character examples of a help text (`"_" or "-"`).
func hideQuoted(msg, val string) string {
	return quoted.ReplaceAllStringFunc(msg, func(q string) string {
		if s, err := strconv.Unquote(q); err == nil && len(s) > 2 && strings.Contains(val, s) {
			return hiddenEnv
		}
		return q
	})
}

var secretTypes = []reflect.Type{reflect.TypeFor[Secret](), reflect.TypeFor[[]Secret]()}

// failedAt reports whether path, or a key above or below it, failed to decode.
func (d *decoder) failedAt(path string) bool {
	for _, p := range d.failed {
		if within(path, p) || within(p, path) {
			return true
		}
	}
	return false
}

// within reports whether path p is q or below q.
func within(p, q string) bool {
	if q == "" || p == q {
		return true
	}
	return strings.HasPrefix(p, q) && (p[len(q)] == '.' || p[len(q)] == '[')
}

// lineOf returns the line of path, else of its nearest ancestor present in the file.
func (d *decoder) lineOf(path string) int {
	for {
		if l, ok := d.lines[path]; ok {
			return l
		}
		if path == "" {
			return 0
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			path = ""
		} else {
			path = path[:i]
		}
	}
}

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			d.fail(n, path, "unknown alias")
			return
		}
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode {
		var ok bool
		if n, ok = d.expand(n, path); !ok {
			return
		}
		if slices.Contains(secretTypes, v.Type()) {
			d.hidden[n] = hiddenSecret
		}
		if n.ShortTag() == "!!null" {
			return // absent: keep the default
		}
	}
	if v.CanAddr() && v.Addr().Type().Implements(unmarshalerType) {
		if err := v.Addr().Interface().(yaml.Unmarshaler).UnmarshalYAML(n); err != nil {
			d.fail(n, path, "%s", err.Error())
		}
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		d.mapping(n, v, path)
	case reflect.Slice:
		d.sequence(n, v, path)
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			d.fail(n, path, "expected a string, got %s", kindName(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
			d.fail(n, path, "expected true or false, got %s", kindName(n))
			return
		}
		var b bool
		if err := n.Decode(&b); err != nil {
			d.fail(n, path, "expected true or false, got %s", kindName(n))
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64, reflect.Int32:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
			d.fail(n, path, "expected an integer, got %s", kindName(n))
			return
		}
		var i int64
		if err := n.Decode(&i); err != nil || v.OverflowInt(i) {
			d.fail(n, path, "integer %s out of range", n.Value)
			return
		}
		v.SetInt(i)
	default:
		panic(fmt.Sprintf("config: no YAML decoding for %s at %s", v.Type(), path))
	}
}

// expand returns n with ${VAR} references in its value replaced. A plain
// (unquoted) scalar's type is resolved again from the expanded text, so
// `partitions: ${N}` is an integer; an expanded empty value is the empty
// string, not null. n itself is never changed: an anchored value reached
// again through an alias is expanded from its original text, once.
func (d *decoder) expand(n *yaml.Node, path string) (*yaml.Node, bool) {
	if !strings.Contains(n.Value, "${") {
		return n, true
	}
	v, err := expandEnv(n.Value, d.lookup)
	if err != nil {
		d.fail(n, path, "%s", err.Error())
		return nil, false
	}
	c := *n
	c.Value = v
	d.hidden[&c] = hiddenEnv
	d.expanded[path] = v
	if c.Style&(yaml.TaggedStyle|yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle|yaml.LiteralStyle|yaml.FoldedStyle) == 0 {
		c.Tag = ""
		if c.ShortTag() == "!!null" {
			c.Tag = "!!str"
		}
	}
	return &c, true
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// expandEnv replaces ${NAME} in s by lookup(NAME); "$${" is a literal "${".
func expandEnv(s string, lookup func(string) (string, bool)) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); {
		switch {
		case strings.HasPrefix(s[i:], "$${"):
			b.WriteString("${")
			i += 3
		case strings.HasPrefix(s[i:], "${"):
			end := strings.IndexByte(s[i+2:], '}')
			if end < 0 {
				return "", errors.New(`unterminated "${": write ${NAME}, or $${ for a literal "${"`)
			}
			name := s[i+2 : i+2+end]
			if !envName.MatchString(name) {
				return "", fmt.Errorf("invalid environment variable name %q in ${...}: want letters, digits and _", name)
			}
			val, ok := lookup(name)
			if !ok {
				return "", fmt.Errorf("environment variable %s is not set", name)
			}
			b.WriteString(val)
			i += 3 + end
		default:
			b.WriteByte(s[i])
			i++
		}
	}
	return b.String(), nil
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// yamlFields maps the YAML keys of struct type t to field indexes.
func yamlFields(t reflect.Type) ([]string, map[string]int) {
	var names []string
	idx := map[string]int{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		names = append(names, name)
		idx[name] = i
	}
	return names, idx
}

func isMerge(k *yaml.Node) bool {
	return k.Kind == yaml.ScalarNode && k.Value == "<<" && k.ShortTag() == "!!merge"
}

func (d *decoder) mapping(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "expected a mapping of keys, got %s", kindName(n))
		return
	}
	names, fields := yamlFields(v.Type())
	// Merge keys (<<: *anchor) first, so that the mapping's own keys win.
	for i := 0; i+1 < len(n.Content); i += 2 {
		if isMerge(n.Content[i]) {
			d.merge(n.Content[i+1], v, path)
		}
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if isMerge(k) {
			continue
		}
		if k.Kind != yaml.ScalarNode {
			d.fail(k, path, "keys must be plain strings, got %s", kindName(k))
			continue
		}
		kp := joinPath(path, k.Value)
		if first, dup := seen[k.Value]; dup {
			d.fail(k, kp, "duplicate key (first set at line %d)", first)
			continue
		}
		seen[k.Value] = k.Line
		fi, ok := fields[k.Value]
		if !ok {
			d.fail(k, kp, "unknown key%s", suggest(k.Value, names))
			continue
		}
		d.lines[kp] = k.Line
		d.decode(val, v.Field(fi), kp)
	}
}

func (d *decoder) merge(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	switch n.Kind {
	case yaml.MappingNode:
		d.mapping(n, v, path)
	case yaml.SequenceNode:
		// The first mapping listed wins, so apply them last to first.
		for i := len(n.Content) - 1; i >= 0; i-- {
			m := n.Content[i]
			if m.Kind == yaml.AliasNode && m.Alias != nil {
				m = m.Alias
			}
			d.mapping(m, v, path)
		}
	default:
		d.fail(n, path, "merge key << needs a mapping or a list of mappings, got %s", kindName(n))
	}
}

var (
	destinationType = reflect.TypeFor[Destination]()
	webhookType     = reflect.TypeFor[Webhook]()
)

func (d *decoder) sequence(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.SequenceNode {
		d.fail(n, path, "expected a list, got %s", kindName(n))
		return
	}
	if len(n.Content) == 0 {
		v.SetZero() // nil, like an absent key
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, e := range n.Content {
		ep := path + "[" + strconv.Itoa(i) + "]"
		d.lines[ep] = e.Line
		el := s.Index(i)
		if el.Type() == destinationType {
			def := NewDestination("", "")
			def.Format, def.Compression = "", "" // see fillFormatDefaults
			el.Set(reflect.ValueOf(def))
		}
		if el.Type() == webhookType {
			el.Set(reflect.ValueOf(NewWebhook("", "", "")))
		}
		d.decode(e, el, ep)
	}
	v.Set(s)
}

// suggest returns ` (did you mean "x"?)` for the known key closest to key.
func suggest(key string, known []string) string {
	best, bestDist := "", 3
	for _, k := range known {
		if dist := editDistance(key, k); dist < bestDist && dist <= len(k)/2 {
			best, bestDist = k, dist
		}
	}
	if best == "" {
		return "; valid keys: " + strings.Join(known, ", ")
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
