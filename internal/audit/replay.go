package audit

import (
	"fmt"

	"github.com/tidemark/tidemark/internal/event"
	"github.com/tidemark/tidemark/internal/sessionize"
)

// assign replays partition p of the log through a fresh sessionizer to find
// the session and page of the events at offsets want. Only the devices of
// those events are sessionized; every other record advances the watermark
// as a tick would, which is all it does to those devices' entities. So the
// replay holds state for a few devices, not for the whole partition, and
// assigns what the pipeline assigned, provided the device's session began
// after the oldest retained record.
func assign(lg Log, cfg sessionize.Config, p int, want map[uint64]Event) (map[uint64]sessionize.Output, error) {
	devices := map[string]bool{}
	var last uint64
	for off := range want {
		last = max(last, off)
	}
	found := map[uint64]sessionize.Output{}
	st := sessionize.NewMemStore(func(o *sessionize.Output) {
		if _, ok := want[o.Offset]; ok && o.Kind == sessionize.KindEvent {
			found[o.Offset] = *o
		}
	})
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
		// The sessionizer skips a record that does not decode (a damaged
		// store): so does the replay, to assign what it assigned.
		if _, err := event.DecodeMeta(val); err != nil {
			return nil
		}
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
		if _, ok := found[off]; !ok {
			return nil, fmt.Errorf("log partition %d offset %d: the replay did not assign the event (a duplicate of an earlier one?)", p, off)
		}
	}
	return found, nil
}
