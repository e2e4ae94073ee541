package catalog

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/portico-gw/portico/shared/config"
)

// TestValidateNextAgreesWithValidate: for random route writes on a valid
// configuration (valid ones, conflicting ones, ones naming a missing
// service, invalid paths, duplicate names, deletions, service and global
// changes), validateNext accepts exactly what Validate accepts and refuses
// with the same error.
func TestValidateNextAgreesWithValidate(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	cur := &config.Config{Services: []config.Service{
		{Name: "a", Targets: []config.Target{{URL: "http://h:1"}}, Meta: config.Meta{Version: 1, Revision: 1}},
		{Name: "b", Targets: []config.Target{{URL: "http://h:2"}}, Meta: config.Meta{Version: 1, Revision: 1}},
	}}
	for i := range 30 {
		cur.Routes = append(cur.Routes, &config.Route{Name: fmt.Sprintf("r%02d", i), Paths: []string{fmt.Sprintf("/r%d", i)},
			Service: "a", Meta: config.Meta{Version: 1, Revision: 1}})
	}
	if err := cur.Validate(); err != nil {
		t.Fatal(err)
	}
	accepted, refused := 0, 0
	for step := range 400 {
		rev := int64(step + 2)
		next := cur.Clone()
		touch := func(m *config.Meta) { m.Version++; m.Revision = rev }
		pick := func() *config.Route { return next.Routes[rng.IntN(len(next.Routes))] }
		switch rng.IntN(9) {
		case 0: // a new route
			r := config.Route{Name: fmt.Sprintf("n%03d", step), Paths: []string{fmt.Sprintf("/n%d", step)}, Service: "b"}
			touch(&r.Meta)
			next.Routes = append(next.Routes, &r)
		case 1: // a new route claiming another's requests
			o := pick()
			r := config.Route{Name: fmt.Sprintf("c%03d", step), Paths: slices.Clone(o.Paths), Methods: slices.Clone(o.Methods), Service: "a"}
			touch(&r.Meta)
			next.Routes = append(next.Routes, &r)
		case 2: // a route naming a service that does not exist
			r := pick()
			r.Service = "missing"
			touch(&r.Meta)
		case 3: // an invalid path
			r := pick()
			r.Paths = []string{"nope"}
			touch(&r.Meta)
		case 4: // a duplicate name
			r := *pick()
			touch(&r.Meta)
			next.Routes = append(next.Routes, &r)
		case 5:
			i := rng.IntN(len(next.Routes))
			next.Routes = slices.Delete(next.Routes, i, i+1)
		case 6: // a service change: the whole check
			s := &next.Services[rng.IntN(len(next.Services))]
			s.Targets = []config.Target{{URL: fmt.Sprintf("http://h:%d", 3+step)}}
			touch(&s.Meta)
		case 7: // a route moved onto another's path with methods
			r := pick()
			r.Paths, r.Methods = slices.Clone(pick().Paths), []string{"GET"}
			touch(&r.Meta)
		default:
			r := pick()
			r.StripPrefix = !r.StripPrefix
			touch(&r.Meta)
		}
		next.Sort()
		got, want := validateNext(cur, next), next.Validate()
		if (got == nil) != (want == nil) || got != nil && !reflect.DeepEqual(config.FieldErrors(got), config.FieldErrors(want)) {
			t.Fatalf("step %d: validateNext = %v, Validate = %v", step, got, want)
		}
		if want == nil {
			cur = next
			accepted++
		} else {
			refused++
		}
	}
	if accepted == 0 || refused == 0 {
		t.Fatalf("accepted %d, refused %d: the cases do not cover both outcomes", accepted, refused)
	}
}
