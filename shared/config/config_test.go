package config

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// collections are Config's fields that hold objects; found by reflection, so
// that a collection added to Config is covered by the tests below without
// anyone remembering to list it.
func collections(t *testing.T) []reflect.StructField {
	t.Helper()
	var out []reflect.StructField
	for _, f := range reflect.VisibleFields(reflect.TypeFor[Config]()) {
		if f.Type.Kind() == reflect.Slice {
			out = append(out, f)
		}
	}
	if len(out) < 4 {
		t.Fatalf("found %d collections in Config, want at least services, routes, consumers and issuers", len(out))
	}
	return out
}

// withNames returns a slice of elem type holding objects with these names.
func withNames(t *testing.T, typ reflect.Type, names ...string) reflect.Value {
	t.Helper()
	s := reflect.MakeSlice(typ, len(names), len(names))
	for i, n := range names {
		e := s.Index(i)
		if e.Kind() == reflect.Pointer { // routes are held by pointer
			e.Set(reflect.New(typ.Elem().Elem()))
			e = e.Elem()
		}
		f := e.FieldByName("Name")
		if !f.IsValid() || f.Kind() != reflect.String {
			t.Fatalf("%s has no Name field", typ.Elem())
		}
		f.SetString(n)
	}
	return s
}

func TestFillEmptyCoversEveryCollection(t *testing.T) {
	for _, f := range collections(t) {
		t.Run(f.Name, func(t *testing.T) {
			var c Config
			c.FillEmpty()
			v := reflect.ValueOf(&c).Elem().FieldByIndex(f.Index)
			if v.IsNil() || v.Len() != 0 {
				t.Fatalf("FillEmpty left %s nil: stores and the catalog would encode it as null", f.Name)
			}
			raw, err := json.Marshal(&c)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(raw), "null") {
				t.Fatalf("filled config encodes a null: %s", raw)
			}

			var full Config
			v = reflect.ValueOf(&full).Elem().FieldByIndex(f.Index)
			v.Set(withNames(t, f.Type, "a"))
			full.FillEmpty()
			if v.Len() != 1 {
				t.Fatalf("FillEmpty changed a filled %s: %d objects", f.Name, v.Len())
			}
		})
	}
}

func TestSortCoversEveryCollection(t *testing.T) {
	for _, f := range collections(t) {
		t.Run(f.Name, func(t *testing.T) {
			var c Config
			v := reflect.ValueOf(&c).Elem().FieldByIndex(f.Index)
			v.Set(withNames(t, f.Type, "b", "c", "a"))
			c.Sort()
			var got []string
			for i := range v.Len() {
				got = append(got, reflect.Indirect(v.Index(i)).FieldByName("Name").String())
			}
			if strings.Join(got, ",") != "a,b,c" {
				t.Fatalf("Sort left %s as %v", f.Name, got)
			}
		})
	}
}
