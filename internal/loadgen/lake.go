package loadgen

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tidemark/tidemark/internal/destination"
	"github.com/tidemark/tidemark/internal/format"
)

// LakeResult is what MeasureLake found in a local lake.
type LakeResult struct {
	Found      int64   // events of the run committed in the lake
	Duplicates int64   // events of the run found more than once
	Latency    Latency // event sent (properties.lg_sent_ns) -> its manifest written (file mtime)
	Waited     time.Duration
}

// MeasureLake waits until want events of run runID are committed in the file
// lake at dir (or timeout passes), then reports how many arrived, duplicates,
// and the end-to-end latency from sending each event to the commit of its
// batch (the modification time of the batch's manifest). It reads only files
// that a manifest names.
func MeasureLake(ctx context.Context, dir, runID string, want int64, timeout time.Duration, out io.Writer) (LakeResult, error) {
	start := time.Now()
	seen := map[string]int{}
	done := map[string]bool{} // manifests read
	var h histogram
	var res LakeResult
	prefix := runID + "-"
	for {
		ents, err := os.ReadDir(filepath.Join(dir, "_manifests"))
		if err != nil && !os.IsNotExist(err) {
			return res, fmt.Errorf("read manifests: %w", err)
		}
		for _, e := range ents {
			name := e.Name()
			if done[name] || !strings.HasSuffix(name, ".json") {
				continue
			}
			info, err := e.Info()
			if err != nil {
				return res, err
			}
			raw, err := os.ReadFile(filepath.Join(dir, "_manifests", name))
			if err != nil {
				return res, err
			}
			// The local lake's own manifests, read as its measuring
			// tool: decoded, not validated (the audit validates).
			var m destination.Manifest
			if err := json.Unmarshal(raw, &m); err != nil {
				return res, fmt.Errorf("manifest %s: %w", name, err)
			}
			done[name] = true
			committed := info.ModTime().UnixNano()
			for _, f := range m.Files {
				if f.Table != format.Events {
					continue
				}
				data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(f.Path)))
				if err != nil {
					return res, err
				}
				rows, err := format.ReadEvents(data)
				if err != nil {
					return res, fmt.Errorf("%s: %w", f.Path, err)
				}
				for _, r := range rows {
					if !strings.HasPrefix(r.EventID, prefix) {
						continue
					}
					seen[r.EventID]++
					if seen[r.EventID] > 1 {
						res.Duplicates++
						continue
					}
					res.Found++
					var p struct {
						SentNs int64 `json:"lg_sent_ns"`
					}
					if r.Properties != nil && json.Unmarshal([]byte(*r.Properties), &p) == nil && p.SentNs > 0 && committed > p.SentNs {
						h.record(time.Duration(committed - p.SentNs))
					}
				}
			}
		}
		res.Waited = time.Since(start)
		if res.Found >= want || res.Waited > timeout {
			break
		}
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	res.Latency = h.latency()
	fmt.Fprintf(out, "  lake       %d of %d events committed after %s waiting, %d duplicates\n", res.Found, want, res.Waited.Round(time.Millisecond), res.Duplicates)
	fmt.Fprintf(out, "  end-to-end p50 %s  p90 %s  p99 %s  max %s (sent -> batch manifest written)\n",
		res.Latency.P50.Round(time.Millisecond), res.Latency.P90.Round(time.Millisecond), res.Latency.P99.Round(time.Millisecond), res.Latency.Max.Round(time.Millisecond))
	if res.Found < want {
		return res, fmt.Errorf("only %d of %d acknowledged events in the lake after %s", res.Found, want, timeout)
	}
	return res, nil
}
