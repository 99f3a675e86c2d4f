package sessionize_test

import (
	"flag"
	"path/filepath"
	"testing"

	"github.com/tidemark/tidemark/internal/sessionize"
	"github.com/tidemark/tidemark/internal/sessionize/sessionizetest"
)

var update = flag.Bool("update", false, "rewrite the expected output of golden files")

func TestGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.txt")
	if len(files) == 0 {
		t.Fatal("no golden files")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			g := sessionizetest.LoadGolden(t, f)
			var outs []sessionize.Output
			st := sessionize.NewMemStore(func(o *sessionize.Output) { outs = append(outs, *o) })
			s := sessionize.New(g.Config, st, 0)
			for i := range g.Records {
				if err := s.Process(uint64(i+1), 100, &g.Records[i]); err != nil {
					t.Fatal(err)
				}
			}
			got := sessionizetest.Render(outs)
			if *update {
				sessionizetest.WriteGolden(t, g, got)
				return
			}
			if got != g.Expected {
				t.Errorf("outputs differ (run with -update to accept)\n--- got\n%s--- want\n%s", got, g.Expected)
			}
		})
	}
}
