package proxy

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/snapshot"
)

// TestStagesGolden checks the compile step of every stage, one feature at a
// time: testdata/stages/<feature>.json is a configuration whose routes use
// the feature in its variants; <feature>.golden is every route's chain as
// it compiles, in order, each stage with its own description
// (stage.Stage.Describe). A refactor of a stage shows here, stage by stage;
// run with -update to rewrite the golden files after an intended change.
// Every input must compile with nothing rejected.
func TestStagesGolden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/stages/*.json")
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no stage inputs: %v", err)
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".json")
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			var cfg config.Config
			if err := config.Decode(raw, &cfg); err != nil {
				t.Fatal(err)
			}
			s, _, err := snapshot.Encode(1, &cfg, time.Unix(0, 0))
			if err != nil {
				t.Fatal(err)
			}
			tab, err := Compile(s, nil, testDeps())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { tab.Retire(nil) })
			if r := tab.Rejected(); len(r) > 0 {
				t.Fatalf("%s does not compile whole: %+v", in, r)
			}
			type route struct {
				Name   string      `json:"route"`
				Stages []stageDesc `json:"stages"`
			}
			var got []route
			for _, r := range tab.routes {
				got = append(got, route{r.Name, describeStages(r.Stages())})
			}
			gotJSON, err := json.MarshalIndent(got, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			gotJSON = append(gotJSON, '\n')
			golden := strings.TrimSuffix(in, ".json") + ".golden"
			if *update {
				if err := os.WriteFile(golden, gotJSON, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if diff := cmp.Diff(string(want), string(gotJSON)); diff != "" {
				t.Fatalf("%s (-want +got):\n%s", golden, diff)
			}
		})
	}
}
