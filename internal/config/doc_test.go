package config

import (
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestConfigurationDocListsEveryKey: the key column of the table in
// docs/configuration.md names exactly the keys Config decodes, no more and no
// fewer. A cell may shorten a key that follows another to its changed tail:
// "`stream.live.max_streams_per_org`, `.max_streams_per_key`".
func TestConfigurationDocListsEveryKey(t *testing.T) {
	raw, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	var walk func(reflect.Type, string)
	walk = func(typ reflect.Type, prefix string) {
		names, fields := yamlFields(typ)
		for _, name := range names {
			ft, key := typ.Field(fields[name]).Type, prefix+name
			switch {
			case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
				walk(ft.Elem(), key+"[].")
			case ft.Kind() == reflect.Struct:
				walk(ft, key+".")
			default:
				want = append(want, key)
			}
		}
	}
	walk(reflect.TypeFor[Config](), "")

	var got []string
	code := regexp.MustCompile("`([^`]+)`")
	for _, line := range strings.Split(string(raw), "\n") {
		cells := strings.Split(line, "|")
		if !strings.HasPrefix(line, "| `") || len(cells) < 3 {
			continue
		}
		var prev []string
		for _, m := range code.FindAllStringSubmatch(cells[1], -1) {
			key := m[1]
			if tail, ok := strings.CutPrefix(key, "."); ok && prev != nil {
				n := len(strings.Split(tail, "."))
				key = strings.Join(append(slices.Clone(prev[:len(prev)-n]), tail), ".")
			}
			prev = strings.Split(key, ".")
			got = append(got, key)
		}
	}
	slices.Sort(want)
	slices.Sort(got)
	for _, k := range want {
		if !slices.Contains(got, k) {
			t.Errorf("docs/configuration.md does not list %s", k)
		}
	}
	for _, k := range got {
		if !slices.Contains(want, k) {
			t.Errorf("docs/configuration.md lists %s, which Config does not decode", k)
		}
	}
}
