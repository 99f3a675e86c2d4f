package postgres

import (
	"encoding/base64"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/internal/destination"
	"github.com/tidemark/tidemark/internal/destination/destinationtest"
	"github.com/tidemark/tidemark/internal/format"
	"github.com/tidemark/tidemark/internal/testenv"
)

// readBack reads what the audit sees of hours: per file path, the ids of its
// rows, and the files of each batch's manifest.
func readBack(t *testing.T, d *Postgres, hours []time.Time) (byFile map[string][]string, listed []destination.StoredFile) {
	t.Helper()
	byFile = map[string][]string{}
	for _, h := range hours {
		files, err := d.EventFiles(t.Context(), h)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range files {
			m, ok, err := d.Manifest(t.Context(), o.Batch)
			if err != nil {
				t.Fatal(err)
			}
			listed = append(listed, o)
			if !ok {
				continue // not committed: the audit counts none of it
			}
			i := slices.IndexFunc(m.Files, func(f destination.File) bool { return f.Path == o.Path })
			if i < 0 || m.Files[i].Bytes != o.Size || m.Files[i].Rows != o.Size || m.Files[i].Table != format.Events {
				t.Fatalf("%s listed with size %d; manifest files %+v", o.Path, o.Size, m.Files)
			}
			rows, err := d.ReadFileEvents(t.Context(), m.Files[i])
			if err != nil {
				t.Fatal(err)
			}
			if int64(len(rows)) != o.Size {
				t.Fatalf("%s: %d rows read, %d listed", o.Path, len(rows), o.Size)
			}
			for _, r := range rows {
				if time.UnixMicro(r.ReceivedAt).UTC().Truncate(time.Hour) != h || r.DeviceID == "" || r.SessionID == "" {
					t.Fatalf("%s: row %+v", o.Path, r)
				}
				byFile[o.Path] = append(byFile[o.Path], r.EventID)
			}
		}
	}
	return byFile, listed
}

// idsByHour maps each file path the batches' events make to their ids.
func idsByHour(bs ...*destination.Batch) map[string][]string {
	out := map[string][]string{}
	for _, b := range bs {
		for _, e := range b.Events {
			p := filePath(time.UnixMicro(e.ReceivedAt).UTC().Truncate(time.Hour), b.ID)
			out[p] = append(out[p], e.EventID)
		}
	}
	return out
}

// TestReadBack: the audit's read-back maps each batch's rows of each hour
// to one file whose size and manifest count what the events table holds:
// rows deleted by hand lower both and are absent from the ids read; rows
// of a batch no record names do not count; an escaped event_id reads back
// as the original.
func TestReadBack(t *testing.T) {
	dbURL, _ := testenv.PostgresDB(t)
	d := newDest(t, dbURL, "readback")
	defer d.Close()
	b1 := destinationtest.Batch(0, 1, 1, 12) // from 14:59 UTC for 2 minutes: two hours
	b2 := destinationtest.Batch(1, 3, 4, 5)  // 16:59: two more
	bf := destinationtest.Batch(2, 5, 5, 3)  // 18:59, as a backfill batch
	var bfIDs []string
	for _, e := range bf.Events {
		bfIDs = append(bfIDs, e.EventID)
	}
	bf.ID = destination.BackfillBatchID(2, bf.Events[0].LogOffset, bf.Events[2].LogOffset, destination.EventIDsDigest(bfIDs))
	bf.FirstSeq, bf.LastSeq, bf.Backfill, bf.Pages, bf.Sessions = 0, 0, true, nil, nil
	for _, b := range []*destination.Batch{b1, b2, bf} {
		if err := d.Write(t.Context(), b); err != nil {
			t.Fatal(err)
		}
	}
	hourOf := func(e format.EventRow) time.Time { return time.UnixMicro(e.ReceivedAt).UTC().Truncate(time.Hour) }
	hours := map[time.Time]bool{}
	for _, b := range []*destination.Batch{b1, b2, bf} {
		for _, e := range b.Events {
			hours[hourOf(e)] = true
		}
	}
	hs := slices.SortedFunc(maps.Keys(hours), time.Time.Compare)
	hs = append(hs, hs[len(hs)-1].Add(time.Hour)) // an hour with nothing
	if len(hs) < 4 {
		t.Fatalf("the batches span %d hours; the test wants several", len(hs)-1)
	}

	got, _ := readBack(t, d, hs)
	if want := idsByHour(b1, b2, bf); !equalSets(got, want) {
		t.Fatalf("read back %v, want %v", got, want)
	}
	m, ok, err := d.Manifest(t.Context(), b1.ID)
	if err != nil || !ok || m.Org != b1.Org || m.Partition != 0 || m.FirstSeq != 1 || m.LastSeq != 1 || m.Backfill ||
		m.EventCount != 12 || len(m.Files) != 2 || m.Files[0].Path > m.Files[1].Path || m.Files[0].Rows+m.Files[1].Rows != 12 {
		t.Fatalf("manifest of %s: %+v %v %v", b1.ID, m, ok, err)
	}
	if m, ok, err := d.Manifest(t.Context(), bf.ID); err != nil || !ok || !m.Backfill || m.Partition != 2 {
		t.Fatalf("manifest of %s: %+v %v %v", bf.ID, m, ok, err)
	}
	if _, ok, err := d.Manifest(t.Context(), "p00-000000000009-000000000009"); ok || err != nil {
		t.Fatalf("manifest of an unknown batch: ok=%v err=%v", ok, err)
	}

	// Rows deleted by hand: the file shrinks with its manifest's count, and
	// the ids read are what is left; a file emptied is no longer listed.
	del := []string{b1.Events[0].EventID, b1.Events[7].EventID}
	for _, e := range b2.Events {
		if hourOf(e) == hourOf(b2.Events[0]) {
			del = append(del, e.EventID)
		}
	}
	testenv.PostgresExec(t, dbURL, "DELETE FROM readback.events WHERE event_id IN ('"+strings.Join(del, "', '")+"')")
	want := idsByHour(b1, b2, bf)
	for p, ids := range want {
		want[p] = slices.DeleteFunc(ids, func(id string) bool { return slices.Contains(del, id) })
		if len(want[p]) == 0 {
			delete(want, p)
		}
	}
	if got, _ := readBack(t, d, hs); !equalSets(got, want) {
		t.Fatalf("after deleting %v: read back %v, want %v", del, got, want)
	}

	// A row of a batch that no record names (moved there by hand): listed,
	// not committed.
	testenv.PostgresExec(t, dbURL, `UPDATE readback.events SET _tidemark_batch = 'p00-000000000050-000000000050'
  WHERE event_id = '`+b1.Events[2].EventID+`'`)
	want[filePath(hourOf(b1.Events[2]), b1.ID)] = slices.DeleteFunc(want[filePath(hourOf(b1.Events[2]), b1.ID)],
		func(id string) bool { return id == b1.Events[2].EventID })
	got, listed := readBack(t, d, hs)
	if !equalSets(got, want) {
		t.Fatalf("with a row of an unrecorded batch: read back %v, want %v", got, want)
	}
	if !slices.ContainsFunc(listed, func(o destination.StoredFile) bool { return o.Batch == "p00-000000000050-000000000050" && o.Size == 1 }) {
		t.Fatalf("the unrecorded batch's row is not listed: %+v", listed)
	}

	// An event_id altered to be storable reads back as the original.
	orig := "ev-\x00-nul"
	testenv.PostgresExec(t, dbURL, `UPDATE readback.events SET event_id = 'ev-`+"\uFFFD"+`-nul',
  _tidemark_escaped = jsonb_build_object('event_id', '`+base64.StdEncoding.EncodeToString([]byte(orig))+`')
  WHERE event_id = '`+b1.Events[3].EventID+`'`)
	p := filePath(hourOf(b1.Events[3]), b1.ID)
	want[p] = slices.Clone(want[p])
	want[p][slices.Index(want[p], b1.Events[3].EventID)] = orig
	if got, _ := readBack(t, d, hs); !equalSets(got, want) {
		t.Fatalf("with an escaped event_id: read back %v, want %v", got, want)
	}
}

// equalSets compares per path the ids as sets with counts.
func equalSets(a, b map[string][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for p, ids := range a {
		x, y := slices.Clone(ids), slices.Clone(b[p])
		slices.Sort(x)
		slices.Sort(y)
		if !slices.Equal(x, y) {
			return false
		}
	}
	return true
}

func TestFilePath(t *testing.T) {
	h := time.Date(2026, 12, 7, 16, 0, 0, 0, time.UTC)
	p := filePath(h, "p03-000000000120-000000000187")
	if p != "events/2026-12-07T16:00:00Z/p03-000000000120-000000000187" {
		t.Fatalf("filePath: %s", p)
	}
	if gh, gb, err := parseFilePath(p); err != nil || !gh.Equal(h) || gb != "p03-000000000120-000000000187" {
		t.Fatalf("parseFilePath(%s) = %v %v %v", p, gh, gb, err)
	}
	for _, bad := range []string{"", "events/", "events/2026-12-07T16:00:00Z/", "pages/2026-12-07T16:00:00Z/x", "events/today/x"} {
		if _, _, err := parseFilePath(bad); err == nil {
			t.Errorf("parseFilePath(%q) accepted", bad)
		}
	}
}
