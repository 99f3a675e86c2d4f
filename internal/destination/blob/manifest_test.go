package blob

import (
	"reflect"
	"strings"
	"testing"
)

const (
	hexA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	hexB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

func validManifest() Manifest {
	return Manifest{
		Version: 1, BatchID: "p03-000000000120-000000000187", Org: "acme", Partition: 3, FirstSeq: 120, LastSeq: 187,
		Files: []File{
			{Path: "events/dt=2024-05-01/hr=13/p03-000000000120-000000000187.parquet", Table: "events", Rows: 2, Bytes: 100, SHA256: hexA},
			{Path: "events/dt=2024-05-01/hr=14/p03-000000000120-000000000187.parquet", Table: "events", Rows: 1, Bytes: 90, SHA256: hexB},
			{Path: "sessions/dt=2024-05-01/hr=13/p03-000000000120-000000000187.parquet", Table: "sessions", Rows: 1, Bytes: 80, SHA256: hexA},
		},
		EventCount: 3, MinLogOffset: 7, MaxLogOffset: 9, EventIDsSHA256: eventIDsDigest([]string{"b", "a", "c"}),
	}
}

const validJSON = `{
  "version": 1,
  "batch_id": "p03-000000000120-000000000187",
  "org": "acme",
  "partition": 3,
  "first_seq": 120,
  "last_seq": 187,
  "backfill": false,
  "files": [
    {
      "path": "events/dt=2024-05-01/hr=13/p03-000000000120-000000000187.parquet",
      "table": "events",
      "rows": 2,
      "bytes": 100,
      "sha256": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    },
    {
      "path": "events/dt=2024-05-01/hr=14/p03-000000000120-000000000187.parquet",
      "table": "events",
      "rows": 1,
      "bytes": 90,
      "sha256": "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
    },
    {
      "path": "sessions/dt=2024-05-01/hr=13/p03-000000000120-000000000187.parquet",
      "table": "sessions",
      "rows": 1,
      "bytes": 80,
      "sha256": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    }
  ],
  "event_count": 3,
  "min_log_offset": 7,
  "max_log_offset": 9,
  "event_ids_sha256": "ea7fb08b7a2dc4619ffb7c7bb38d95a2047935fa165d71b12efd3852a2e6d0cc"
}
`

func TestManifestEncoding(t *testing.T) {
	m := validManifest()
	got, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	// event_ids_sha256 is sha256("a\nb\nc"): the ids b, a, c sorted.
	if string(got) != validJSON {
		t.Fatalf("Encode:\n%s\nwant:\n%s", got, validJSON)
	}
	back, err := DecodeManifest(got)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, m) {
		t.Fatalf("round trip: %+v", back)
	}

	empty := Manifest{Version: 1, BatchID: "p00-000000000001-000000000001", Org: "o", FirstSeq: 1, LastSeq: 1, EventIDsSHA256: emptySHA256}
	data, err := empty.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `"files": []`) {
		t.Errorf("no files encodes as %s", data)
	}
	if _, err := DecodeManifest(data); err != nil {
		t.Fatal(err)
	}
}

func TestDecodeManifestRejects(t *testing.T) {
	valid, err := func() ([]byte, error) { m := validManifest(); return m.Encode() }()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := DecodeManifest(valid); err != nil {
		t.Fatalf("valid manifest: %v", err)
	}
	edit := func(f func(m *Manifest)) string {
		m := validManifest()
		f(&m)
		b, err := m.Encode()
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	const path0 = "events/dt=2024-05-01/hr=13/p03-000000000120-000000000187.parquet"
	for _, tc := range []struct {
		name, data, want string
	}{
		{"empty", "", "EOF"},
		{"not JSON", "nope", "invalid character"},
		{"array", "[]", "cannot unmarshal array"},
		{"trailing data", string(valid) + "{}", "data after the JSON object"},
		{"unknown field", strings.Replace(string(valid), `"org"`, `"extra": 1, "org"`, 1), `unknown field "extra"`},
		{"version", edit(func(m *Manifest) { m.Version = 2 }), "unsupported version 2"},
		{"batch id", edit(func(m *Manifest) { m.BatchID = "p03-000000000120-000000000188" }), "batch_id does not match"},
		{"partition", edit(func(m *Manifest) { m.Partition = 4 }), "batch_id does not match"},
		{"negative partition", edit(func(m *Manifest) { m.Partition = -1 }), "negative partition"},
		{"seq order", edit(func(m *Manifest) { m.FirstSeq = 200 }), "first_seq 200 > last_seq 187"},
		{"negative seq", strings.Replace(string(valid), `"first_seq": 120`, `"first_seq": -120`, 1), "cannot unmarshal number -120"},
		{"no org", edit(func(m *Manifest) { m.Org = "" }), "empty org"},
		{"backfill with seqs", edit(func(m *Manifest) { m.Backfill = true }), "backfill batch with pipeline sequence numbers"},
		{"backfill id", edit(func(m *Manifest) { m.Backfill, m.FirstSeq, m.LastSeq = true, 0, 0 }), "does not match partition, log offsets and event id digest"},
		{"table mismatch", edit(func(m *Manifest) { m.Files[0].Table = "pages" }), "not in table"},
		{"unknown table", edit(func(m *Manifest) { m.Files[0].Path = "clicks" + path0[6:] }), "is not <table>"},
		{"other batch", edit(func(m *Manifest) {
			m.Files[0].Path = strings.Replace(path0, "187", "188", 1)
		}), "not a data file of batch"},
		{"bad ext", edit(func(m *Manifest) { m.Files[0].Path = strings.Replace(path0, ".parquet", ".csv", 1) }), "not a data file"},
		{"no ext", edit(func(m *Manifest) { m.Files[0].Path = strings.TrimSuffix(path0, ".parquet") }), "not a data file"},
		{"bad hour", edit(func(m *Manifest) { m.Files[0].Path = strings.Replace(path0, "hr=13", "hr=24", 1) }), "is not <table>"},
		{"short hour", edit(func(m *Manifest) { m.Files[0].Path = strings.Replace(path0, "hr=13", "hr=1", 1) }), "is not <table>"},
		{"bad date", edit(func(m *Manifest) { m.Files[0].Path = strings.Replace(path0, "05-01", "02-30", 1) }), "is not <table>"},
		{"extra dir", edit(func(m *Manifest) { m.Files[0].Path = "x/" + path0 }), "is not <table>"},
		{"traversal", edit(func(m *Manifest) { m.Files[0].Path = "events/../../etc/p03-000000000120-000000000187.parquet" }), "is not <table>"},
		{"two formats", edit(func(m *Manifest) {
			m.Files[2].Path = strings.Replace(m.Files[2].Path, ".parquet", ".ndjson.gz", 1)
		}), "two formats"},
		{"unsorted", edit(func(m *Manifest) { m.Files[0], m.Files[1] = m.Files[1], m.Files[0] }), "not after"},
		{"duplicate", edit(func(m *Manifest) { m.Files[1] = m.Files[0] }), "not after"},
		{"zero rows", edit(func(m *Manifest) { m.Files[2].Rows = 0 }), "0 rows"},
		{"zero bytes", edit(func(m *Manifest) { m.Files[2].Bytes = 0 }), "0 bytes"},
		{"bad sha", edit(func(m *Manifest) { m.Files[0].SHA256 = strings.ToUpper(hexA) }), "not a lowercase hex"},
		{"short sha", edit(func(m *Manifest) { m.Files[0].SHA256 = "abc" }), "not a lowercase hex"},
		{"event count", edit(func(m *Manifest) { m.EventCount = 4 }), "event_count 4"},
		{"offsets", edit(func(m *Manifest) { m.MinLogOffset = 10 }), "bad log offset range"},
		{"negative offset", edit(func(m *Manifest) { m.MinLogOffset = -1 }), "bad log offset range"},
		{"ids digest", edit(func(m *Manifest) { m.EventIDsSHA256 = "x" }), "event_ids_sha256"},
		{"no events, offsets", edit(func(m *Manifest) { m.Files = m.Files[2:]; m.EventCount = 0 }), "log offsets set without events"},
		{"no events, digest", edit(func(m *Manifest) {
			m.Files, m.EventCount, m.MinLogOffset, m.MaxLogOffset = m.Files[2:], 0, 0, 0
		}), "digest of the empty string"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeManifest([]byte(tc.data))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func FuzzDecodeManifest(f *testing.F) {
	m := validManifest()
	valid, _ := m.Encode()
	f.Add(valid)
	f.Add([]byte(`{"version":1,"batch_id":"p00-000000000001-000000000001","org":"o","partition":0,"first_seq":1,"last_seq":1,` +
		`"backfill":true,"files":null,"event_count":0,"min_log_offset":0,"max_log_offset":0,` +
		`"event_ids_sha256":"` + emptySHA256 + `"}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"files":[{"path":"events/dt=2024-05-01/hr=13/x.parquet"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := DecodeManifest(data)
		if err != nil {
			return
		}
		// Whatever is accepted re-encodes canonically and decodes the same.
		enc, err := m.Encode()
		if err != nil {
			t.Fatalf("Encode of a decoded manifest: %v", err)
		}
		m2, err := DecodeManifest(enc)
		if err != nil {
			t.Fatalf("re-decode: %v\n%s", err, enc)
		}
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("round trip changed the manifest:\n%+v\n%+v", m, m2)
		}
		enc2, _ := m2.Encode()
		if string(enc) != string(enc2) {
			t.Fatal("encoding is not canonical")
		}
		// Accepted paths stay inside their table.
		for _, f := range m.Files {
			if strings.Contains(f.Path, "..") || strings.HasPrefix(f.Path, "/") || !strings.HasPrefix(f.Path, f.Table+"/dt=") {
				t.Fatalf("accepted path %q", f.Path)
			}
		}
	})
}
