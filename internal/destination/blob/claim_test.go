package blob

import (
	"bytes"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/tidemark/tidemark/internal/destination"
	"github.com/tidemark/tidemark/internal/destination/destinationtest"
	"github.com/tidemark/tidemark/internal/format"
)

// A destination whose place is inside another's (a hand-made overlap the
// configuration check cannot see: two deployments, a symlink): the outer
// one's cleanup must not delete the inner one's files, committed or not,
// nor files of any shape but its own exact layout.
func TestCleanupIgnoresForeignAndDeeperFiles(t *testing.T) {
	dir := t.TempDir()
	outer := openDir(t, dir, format.Default)
	inner := openDir(t, filepath.Join(dir, "events"), format.Default)
	if err := inner.Write(t.Context(), destinationtest.Batch(4, 1, 10, 5)); err != nil {
		t.Fatal(err)
	}
	if err := (crashing{inner}).WriteUncommitted(t.Context(), destinationtest.Batch(4, 11, 20, 5)); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{
		"events/dt=2024-05-01/hr=13/sub/p04-000000000011-000000000020.parquet",
		"events/dt=2024-05-01/hr=13/sub/p04-000000000011-000000000020.parquet.18d2f0a1b2c3d4e5.tmp",
		"events/dt=2024-5-1/hr=13/p04-000000000011-000000000020.parquet",
		"events/dt=2024-05-01/hr=1/p04-000000000011-000000000020.parquet",
		"pages/x/dt=2024-05-01/hr=13/p04-000000000011-000000000020.parquet",
		"_manifests/sub/p04-000000000011-000000000020.json.18d2f0a1b2c3d4e5.tmp",
	} {
		touch(t, dir, k)
	}
	want := tree(t, dir)
	if len(want) < 10 {
		t.Fatalf("setup wrote only %d files", len(want))
	}
	for _, after := range []uint64{0, 10} {
		if err := outer.Cleanup(t.Context(), 4, after); err != nil {
			t.Fatal(err)
		}
		if got := tree(t, dir); !maps.EqualFunc(got, want, bytes.Equal) {
			t.Fatalf("Cleanup(after=%d) of the outer destination deleted\n%s", after,
				strings.Join(slices.Sorted(maps.Keys(maps.Collect(func(yield func(string, []byte) bool) {
					for k, v := range want {
						if _, ok := got[k]; !ok && !yield(k, v) {
							return
						}
					}
				}))), "\n"))
		}
	}
	// The inner one cleans up its own uncommitted batch, and only that.
	if err := inner.Cleanup(t.Context(), 4, 10); err != nil {
		t.Fatal(err)
	}
	got := tree(t, dir)
	for k := range want {
		_, kept := got[k]
		rel, inInner := strings.CutPrefix(k, "events/")
		_, _, name, ok := splitDataPath(rel)
		if own := inInner && ok && strings.HasPrefix(name, "p04-000000000011-000000000020."); kept == own {
			t.Errorf("%s: kept %v after the inner destination's cleanup", k, kept)
		}
	}
}

func TestClaimFile(t *testing.T)  { testClaim(t, fileBackend) }
func TestClaimS3(t *testing.T)    { testClaim(t, s3Backend) }
func TestClaimGCS(t *testing.T)   { testClaim(t, gcsBackend) }
func TestClaimAzure(t *testing.T) { testClaim(t, azureBackend) }

// testClaim: a place belongs to the first destination that claims it; any
// other owner (another org, another destination, the same names from
// another data directory) is refused there, above it and below it, and
// Probe reports it as a permanent ClassClaimed error.
func testClaim(t *testing.T, be backend) {
	bucket := be.bucket(t)
	open := func(prefix string, o Owner) *Blob {
		d := openURL(t, be.url(t, bucket, prefix), format.Default)
		d.SetOwner(o)
		return d
	}
	acme := Owner{Org: "acme", Destination: "lake", ID: destination.NewOwnerID()}
	globex := Owner{Org: "globex", Destination: "lake", ID: destination.NewOwnerID()}
	acmeNewDataDir := Owner{Org: "acme", Destination: "lake", ID: destination.NewOwnerID()}
	acmeCopy := Owner{Org: "acme", Destination: "copy", ID: acme.ID}

	// A lake written before markers existed is claimed on first start.
	legacy := openURL(t, be.url(t, bucket, "t/shared"), format.Default)
	if err := legacy.Write(t.Context(), destinationtest.Batch(1, 1, 3, 2)); err != nil {
		t.Fatal(err)
	}
	d := open("t/shared", acme)
	if err := d.Probe(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := d.Probe(t.Context()); err != nil {
		t.Fatalf("second probe of the owner: %v", err)
	}
	if err := d.Owned(t.Context()); err != nil {
		t.Fatalf("Owned: %v", err)
	}
	objs := be.objects(t, be.url(t, bucket, "t/shared"))
	if !bytes.Contains(objs[MarkerKey], []byte(acme.ID)) {
		t.Fatalf("marker %q", objs[MarkerKey])
	}

	refused := func(what string, d *Blob, want string) {
		t.Helper()
		err := d.Probe(t.Context())
		if err == nil || !errors.Is(err, ErrClaimed) || Classify(err) != ClassClaimed || !IsPermanent(err) {
			t.Fatalf("%s: Probe = %v (class %v), want a permanent ErrClaimed", what, err, Classify(err))
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error does not say %q: %v", what, want, err)
		}
		if err := d.Owned(t.Context()); !errors.Is(err, ErrClaimed) && !strings.Contains(what, "below") {
			t.Errorf("%s: Owned = %v, want ErrClaimed", what, err)
		}
	}
	refused("another org, same place", open("t/shared", globex), `org "acme" destination "lake"`)
	refused("another destination of the org", open("t/shared", acmeCopy), `org "acme" destination "lake"`)
	refused("same names, another data directory", open("t/shared", acmeNewDataDir), "another data directory")
	refused("inside", open("t/shared/events", globex), `inside the place of org "acme" destination "lake"`)
	refused("containing (a claim below)", open("t", globex), `org "acme" destination "lake"`)
	if be.name != "File" { // file:// has no bucket root: its "above" is the parent directories
		refused("bucket root (a claim below)", open("", globex), "inside this destination's place")
	}
	if err := open("t/shared", acme).Owned(t.Context()); err != nil {
		t.Errorf("Owned by the owner after the refusals: %v", err)
	}
	// Owned without an id (an offline audit of a data directory that never
	// claimed) matches the names.
	if err := open("t/shared", Owner{Org: "acme", Destination: "lake"}).Owned(t.Context()); err != nil {
		t.Errorf("Owned without an id: %v", err)
	}
	// A sibling whose name extends the prefix is another place.
	if err := open("t/shared2", globex).Probe(t.Context()); err != nil {
		t.Errorf("sibling t/shared2: %v", err)
	}

	// Two owners claiming one new place at once: exactly one wins.
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		o := Owner{Org: "race", Destination: "lake", ID: destination.NewOwnerID()}
		d := open("t/race", o)
		wg.Go(func() { errs[i] = d.Claim(t.Context()) })
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, ErrClaimed):
			t.Errorf("racing claim: %v", err)
		}
	}
	if won != 1 {
		t.Errorf("%d of %d racing claims won, want 1: %v", won, len(errs), errs)
	}
}

// A symlinked directory is the place it points to: a destination reached
// through a link into another's place is inside it.
func TestClaimThroughSymlink(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real")
	if err := os.MkdirAll(real, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, filepath.Join(dir, "alias")); err != nil {
		t.Fatal(err)
	}
	a := openDir(t, real, format.Default)
	a.SetOwner(Owner{Org: "acme", Destination: "lake", ID: destination.NewOwnerID()})
	if err := a.Probe(t.Context()); err != nil {
		t.Fatal(err)
	}
	b := openDir(t, filepath.Join(dir, "alias", "events"), format.Default)
	b.SetOwner(Owner{Org: "globex", Destination: "lake", ID: destination.NewOwnerID()})
	if err := b.Probe(t.Context()); !errors.Is(err, ErrClaimed) {
		t.Fatalf("Probe through the link = %v, want ErrClaimed", err)
	}
	if err := b.Owned(t.Context()); !errors.Is(err, ErrClaimed) {
		t.Fatalf("Owned through the link = %v, want ErrClaimed", err)
	}
}
