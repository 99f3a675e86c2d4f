package sessionize_test

import (
	"sort"

	"github.com/tidemark/tidemark/internal/sessionize"
)

// memStore is an in-memory Store for tests of the pure logic; the Pebble-backed
// store in package pipeline runs the same golden files.
type memStore struct {
	devices map[string]*sessionize.Device
	index   map[sessionize.IndexEntry]bool
	seen    map[string]int64
	out     []sessionize.Output
}

func newMemStore() *memStore {
	return &memStore{devices: map[string]*sessionize.Device{}, index: map[sessionize.IndexEntry]bool{}, seen: map[string]int64{}}
}

func (m *memStore) Device(key string) (*sessionize.Device, error) {
	d := m.devices[key]
	if d == nil {
		return nil, nil
	}
	c := *d
	if d.Page != nil {
		p := *d.Page
		c.Page = &p
	}
	return &c, nil
}
func (m *memStore) PutDevice(key string, d *sessionize.Device) { m.devices[key] = d }
func (m *memStore) DeleteDevice(key string)                    { delete(m.devices, key) }
func (m *memStore) Index(b int64, key string) {
	m.index[sessionize.IndexEntry{Bucket: b, Key: key}] = true
}
func (m *memStore) Unindex(b int64, key string) {
	delete(m.index, sessionize.IndexEntry{Bucket: b, Key: key})
}
func (m *memStore) sorted() []sessionize.IndexEntry {
	var es []sessionize.IndexEntry
	for e := range m.index {
		es = append(es, e)
	}
	sort.Slice(es, func(i, j int) bool {
		if es[i].Bucket != es[j].Bucket {
			return es[i].Bucket < es[j].Bucket
		}
		return es[i].Key < es[j].Key
	})
	return es
}
func (m *memStore) Due(from, wm int64, limit int) ([]sessionize.IndexEntry, error) {
	var out []sessionize.IndexEntry
	for _, e := range m.sorted() {
		if e.Bucket < from {
			continue
		}
		if e.Bucket > wm || len(out) == limit {
			break
		}
		out = append(out, e)
	}
	return out, nil
}
func (m *memStore) FirstDue(from int64) (int64, bool, error) {
	for _, e := range m.sorted() {
		if e.Bucket >= from {
			return e.Bucket, true, nil
		}
	}
	return 0, false, nil
}
func (m *memStore) Seen(org, id string) (int64, bool, error) {
	at, ok := m.seen[org+"\x00"+id]
	return at, ok, nil
}
func (m *memStore) Remember(org, id string, at int64) { m.seen[org+"\x00"+id] = at }
func (m *memStore) Emit(o *sessionize.Output) error {
	m.out = append(m.out, *o)
	return nil
}
