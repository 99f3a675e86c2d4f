package eventlog

import (
	"container/list"

	"github.com/tidemark/tidemark/internal/sessionize"
)

// deviceCacheEntries bounds each partition's cache of device states: about
// 0.6 KB each, so ~0.6 MiB per partition whatever the number of open
// sessions (invariant 7: the states themselves stay in the store).
const deviceCacheEntries = 1024

// deviceCache holds the committed states of a partition's most recently
// used devices, so that a device active again soon is not read back from
// Pebble. It is only a cache: it holds exactly what the store holds for
// those keys (the sessionizer is the only writer of its partition's device
// states, and entries are updated after each commit), so decisions, outputs
// and replays are the same with or without it. A chunk that fails to
// commit may have changed cached states in place: the caller clears it.
type deviceCache struct {
	m   map[string]*list.Element
	lru list.List // front: most recently used; values are *cachedDevice
}

type cachedDevice struct {
	key string
	d   *sessionize.Device
}

func newDeviceCache() *deviceCache {
	return &deviceCache{m: make(map[string]*list.Element)}
}

func (c *deviceCache) get(key string) (*sessionize.Device, bool) {
	if c == nil {
		return nil, false
	}
	e, ok := c.m[key]
	if !ok {
		return nil, false
	}
	c.lru.MoveToFront(e)
	return e.Value.(*cachedDevice).d, true
}

// put records the committed state of key; nil means the device has none.
func (c *deviceCache) put(key string, d *sessionize.Device) {
	if c == nil {
		return
	}
	if e, ok := c.m[key]; ok {
		if d == nil {
			c.lru.Remove(e)
			delete(c.m, key)
			return
		}
		e.Value.(*cachedDevice).d = d
		c.lru.MoveToFront(e)
		return
	}
	if d == nil {
		return
	}
	if c.lru.Len() >= deviceCacheEntries {
		old := c.lru.Back()
		c.lru.Remove(old)
		delete(c.m, old.Value.(*cachedDevice).key)
	}
	c.m[key] = c.lru.PushFront(&cachedDevice{key: key, d: d})
}

func (c *deviceCache) clear() {
	if c == nil {
		return
	}
	clear(c.m)
	c.lru.Init()
}
