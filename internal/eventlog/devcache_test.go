package eventlog

import (
	"fmt"
	"testing"

	"github.com/tidemark/tidemark/internal/sessionize"
)

// TestDeviceCache: bounded, least recently used out first, nil removes.
func TestDeviceCache(t *testing.T) {
	c := newDeviceCache()
	for i := range deviceCacheEntries + 10 {
		c.put(fmt.Sprint(i), &sessionize.Device{Bucket: int64(i)})
		if i == deviceCacheEntries-1 {
			c.get("0") // 0 is used again before the evictions start: it stays
		}
	}
	if c.lru.Len() != deviceCacheEntries || len(c.m) != deviceCacheEntries {
		t.Fatalf("cache holds %d/%d entries, want %d", c.lru.Len(), len(c.m), deviceCacheEntries)
	}
	if _, ok := c.get("0"); !ok {
		t.Error("recently used entry evicted")
	}
	if _, ok := c.get("1"); ok {
		t.Error("least recently used entry kept")
	}
	c.put("0", nil)
	if _, ok := c.get("0"); ok {
		t.Error("deleted device still cached")
	}
	c.clear()
	if d, ok := c.get(fmt.Sprint(deviceCacheEntries)); ok || d != nil || c.lru.Len() != 0 {
		t.Error("clear left entries")
	}
	var none *deviceCache // a nil cache caches nothing
	none.put("x", &sessionize.Device{})
	if _, ok := none.get("x"); ok {
		t.Error("nil cache returned an entry")
	}
}
