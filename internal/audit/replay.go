package audit

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/tidemark/tidemark/internal/event"
	"github.com/tidemark/tidemark/internal/eventlog"
	"github.com/tidemark/tidemark/internal/sessionize"
)

// assign replays partition p of the log through a fresh sessionizer to find
// the session and page of the events at offsets want. Only the devices of
// those events are sessionized; every other record advances the watermark
// as a tick would, which is all it does to those devices' entities. So the
// replay holds state for a few devices, not for the whole partition, and
// assigns what the pipeline assigned, provided the device's session began
// after the oldest retained record.
func assign(lg *eventlog.Log, cfg sessionize.Config, p int, want map[uint64]Event) (map[uint64]assigned, error) {
	devices := map[string]bool{}
	var last uint64
	for off := range want {
		last = max(last, off)
	}
	st := newMemStore(want)
	// The device keys, from the log itself.
	for off := range want {
		var h event.Head
		err := lg.Scan(p, off, off, func(_ uint64, val []byte) (err error) {
			h, err = event.Peek(val)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("log partition %d offset %d: %w", p, off, err)
		}
		if h.Kind != event.KindEvent {
			return nil, fmt.Errorf("log partition %d offset %d: not an event", p, off)
		}
		devices[h.Org+"\x00"+h.Device] = true
	}
	first, err := lg.FirstOffset(p)
	if err != nil {
		return nil, err
	}
	sz := sessionize.New(cfg, st, 0)
	err = lg.Scan(p, first, last, func(off uint64, val []byte) error {
		h, err := event.Peek(val)
		if err != nil {
			return fmt.Errorf("log partition %d offset %d: %w", p, off, err)
		}
		rec := event.Record{Kind: event.KindTick, Time: h.Time}
		if h.Kind == event.KindEvent && devices[h.Org+"\x00"+h.Device] {
			if rec, err = event.Decode(val); err != nil {
				return fmt.Errorf("log partition %d offset %d: %w", p, off, err)
			}
		}
		return sz.Process(off, len(val), &rec)
	})
	if err != nil {
		return nil, err
	}
	for off := range want {
		if _, ok := st.found[off]; !ok {
			return nil, fmt.Errorf("log partition %d offset %d: the replay did not assign the event (a duplicate of an earlier one?)", p, off)
		}
	}
	return st.found, nil
}

// assigned is an event's place in the entities.
type assigned struct {
	out sessionize.Output
}

// memStore is the replay's sessionizer state: in memory, for the few devices
// replayed. It keeps only the outputs of the wanted events.
type memStore struct {
	want    map[uint64]Event
	found   map[uint64]assigned
	devices map[string]*sessionize.Device
	index   []sessionize.IndexEntry // sorted by (bucket, key)
	seen    map[string]int64
}

func newMemStore(want map[uint64]Event) *memStore {
	return &memStore{want: want, found: map[uint64]assigned{}, devices: map[string]*sessionize.Device{}, seen: map[string]int64{}}
}

func (m *memStore) Device(key string) (*sessionize.Device, error) {
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

func (m *memStore) PutDevice(key string, d *sessionize.Device) { m.devices[key] = d }
func (m *memStore) DeleteDevice(key string)                    { delete(m.devices, key) }

func cmpEntry(a, b sessionize.IndexEntry) int {
	return cmp.Or(cmp.Compare(a.Bucket, b.Bucket), strings.Compare(a.Key, b.Key))
}

func (m *memStore) Index(bucket int64, key string) {
	e := sessionize.IndexEntry{Bucket: bucket, Key: key}
	if i, found := slices.BinarySearchFunc(m.index, e, cmpEntry); !found {
		m.index = slices.Insert(m.index, i, e)
	}
}

func (m *memStore) Unindex(bucket int64, key string) {
	e := sessionize.IndexEntry{Bucket: bucket, Key: key}
	if i, found := slices.BinarySearchFunc(m.index, e, cmpEntry); found {
		m.index = slices.Delete(m.index, i, i+1)
	}
}

func (m *memStore) Due(from, wm int64, limit int) ([]sessionize.IndexEntry, error) {
	i, _ := slices.BinarySearchFunc(m.index, sessionize.IndexEntry{Bucket: from}, cmpEntry)
	var out []sessionize.IndexEntry
	for ; i < len(m.index) && m.index[i].Bucket <= wm && len(out) < limit; i++ {
		out = append(out, m.index[i])
	}
	return out, nil
}

func (m *memStore) FirstDue(from int64) (int64, bool, error) {
	i, _ := slices.BinarySearchFunc(m.index, sessionize.IndexEntry{Bucket: from}, cmpEntry)
	if i == len(m.index) {
		return 0, false, nil
	}
	return m.index[i].Bucket, true, nil
}

func (m *memStore) Seen(org, id string) (int64, bool, error) {
	at, ok := m.seen[org+"\x00"+id]
	return at, ok, nil
}

func (m *memStore) Remember(org, id string, at int64) { m.seen[org+"\x00"+id] = at }

func (m *memStore) Emit(o *sessionize.Output) error {
	if o.Kind == sessionize.KindEvent {
		if _, ok := m.want[o.Offset]; ok {
			m.found[o.Offset] = assigned{out: *o}
		}
	}
	return nil
}
