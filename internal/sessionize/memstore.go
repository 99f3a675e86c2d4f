package sessionize

import (
	"cmp"
	"slices"
	"strings"
)

// MemStore is a Store in memory, for sessionizing a few devices (audit
// replays) and for tests of the pure logic; the pipeline's store is on disk.
// Its memory grows with the devices and message ids it sees.
type MemStore struct {
	// Emitted receives every output; nil drops them.
	Emitted func(o *Output)

	devices map[string]*Device
	index   []IndexEntry // sorted by (bucket, key)
	seen    map[dedupeKey]int64
}

type dedupeKey struct{ org, device, id string }

// NewMemStore returns an empty MemStore that passes outputs to emitted.
func NewMemStore(emitted func(o *Output)) *MemStore {
	return &MemStore{Emitted: emitted, devices: map[string]*Device{}, seen: map[dedupeKey]int64{}}
}

// Device returns a copy, as a store on disk would.
func (m *MemStore) Device(key string) (*Device, error) {
	d := m.devices[key]
	if d == nil {
		return nil, nil
	}
	c := *d
	if d.Page != nil {
		pg := *d.Page
		c.Page = &pg
	}
	return &c, nil
}

func (m *MemStore) PutDevice(key string, d *Device) { m.devices[key] = d }
func (m *MemStore) DeleteDevice(key string)         { delete(m.devices, key) }

func cmpEntry(a, b IndexEntry) int {
	return cmp.Or(cmp.Compare(a.Bucket, b.Bucket), strings.Compare(a.Key, b.Key))
}

func (m *MemStore) Index(bucket int64, key string) {
	e := IndexEntry{Bucket: bucket, Key: key}
	if i, found := slices.BinarySearchFunc(m.index, e, cmpEntry); !found {
		m.index = slices.Insert(m.index, i, e)
	}
}

func (m *MemStore) Unindex(bucket int64, key string) {
	if i, found := slices.BinarySearchFunc(m.index, IndexEntry{Bucket: bucket, Key: key}, cmpEntry); found {
		m.index = slices.Delete(m.index, i, i+1)
	}
}

func (m *MemStore) Due(from, wm int64, limit int) ([]IndexEntry, error) {
	i, _ := slices.BinarySearchFunc(m.index, IndexEntry{Bucket: from}, cmpEntry)
	var out []IndexEntry
	for ; i < len(m.index) && m.index[i].Bucket <= wm && len(out) < limit; i++ {
		out = append(out, m.index[i])
	}
	return out, nil
}

func (m *MemStore) FirstDue(from int64) (int64, bool, error) {
	i, _ := slices.BinarySearchFunc(m.index, IndexEntry{Bucket: from}, cmpEntry)
	if i == len(m.index) {
		return 0, false, nil
	}
	return m.index[i].Bucket, true, nil
}

func (m *MemStore) Seen(org, device, id string) (int64, bool, error) {
	at, ok := m.seen[dedupeKey{org, device, id}]
	return at, ok, nil
}

func (m *MemStore) Remember(org, device, id string, at int64) {
	m.seen[dedupeKey{org, device, id}] = at
}

func (m *MemStore) Emit(o *Output) error {
	if m.Emitted != nil {
		m.Emitted(o)
	}
	return nil
}
