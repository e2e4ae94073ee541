package ui

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
)

// TestStageOrderMatchesDataPlane keeps the route view's list of stages
// (assets/live.js) in the order the data plane compiles them
// (dataplane/internal/proxy/stages.go, the one place that order is
// written): a stage added, removed or moved there fails here until the UI
// follows.
func TestStageOrderMatchesDataPlane(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("..", "..", "..", "dataplane", "internal", "proxy", "stages.go"))
	if err != nil {
		t.Fatal(err)
	}
	chain := regexp.MustCompile(`(?s)return stage\.NewChain\((.*?)stage\.First\(`).FindSubmatch(src)
	if chain == nil {
		t.Fatal("stages.go: no stage.NewChain(... stage.First( block")
	}
	var want []string
	for _, m := range regexp.MustCompile(`(?m)^\s+([A-Za-z][\w.]*)\(`).FindAllSubmatch(chain[1], -1) {
		want = append(want, string(m[1]))
	}
	js, err := assets.ReadFile("assets/live.js")
	if err != nil {
		t.Fatal(err)
	}
	list := regexp.MustCompile(`(?s)const STAGES = \[(.*?)\n\];`).FindSubmatch(js)
	if list == nil {
		t.Fatal("live.js: no STAGES list")
	}
	var got []string
	for _, m := range regexp.MustCompile(`'([\w.]+)'\],\n`).FindAllSubmatch(append(list[1], '\n'), -1) {
		got = append(got, string(m[1]))
	}
	if len(want) < 10 || !slices.Equal(got, want) {
		t.Errorf("live.js STAGES compile steps\n got %q\nwant %q (stages.go order)", got, want)
	}
}
