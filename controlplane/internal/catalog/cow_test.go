package catalog

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/portico-gw/portico/shared/config"
)

// TestWritesLeavePublishedRevisionsAlone: a mutation edits a shallow copy
// of the published configuration (nextOf), so no write of any kind may
// change a revision already published, which readers and data planes may
// still hold: each published revision encodes the same after every later
// write as when it was published.
func TestWritesLeavePublishedRevisionsAlone(t *testing.T) {
	c := newBoltCatalog(t)
	ctx := context.Background()
	actor := Actor{Principal: "test"}
	type seen struct {
		p    *Published
		json string
	}
	var published []seen
	check := func(step string) {
		t.Helper()
		for _, s := range published {
			if b, _ := json.Marshal(s.p.State); string(b) != s.json {
				t.Fatalf("after %s: revision %d changed under its readers:\nwas %s\nnow %s", step, s.p.State.Revision, s.json, b)
			}
		}
		p := c.Current()
		b, _ := json.Marshal(p.State)
		published = append(published, seen{p, string(b)})
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	svc := config.Service{Name: "s", Targets: []config.Target{{URL: "http://10.0.0.1:80"}}}
	steps := []struct {
		name string
		do   func() error
	}{
		{"put service", func() error { _, err := Put(ctx, c, Services, svc, Upsert, Precondition{}, actor); return err }},
		{"put route", func() error {
			_, err := Put(ctx, c, Routes, config.Route{Name: "r", Paths: []string{"/r", "/r2"}, Methods: []string{"GET"}, Service: "s",
				Cache: &config.RouteCache{TTL: config.Duration(time.Minute)}}, Upsert, Precondition{}, actor)
			return err
		}},
		{"put consumer", func() error {
			_, err := Put(ctx, c, Consumers, config.Consumer{Name: "ci", Groups: []string{"a", "b"}}, Upsert, Precondition{}, actor)
			return err
		}},
		{"create api key", func() error { _, _, _, err := c.CreateAPIKey(ctx, "ci", actor); return err }},
		{"create another api key", func() error { _, _, _, err := c.CreateAPIKey(ctx, "ci", actor); return err }},
		{"delete the first api key", func() error {
			cs, err := Get(c, Consumers, "ci")
			if err != nil {
				return err
			}
			_, err = c.DeleteAPIKey(ctx, "ci", cs.APIKeys[0].ID, actor)
			return err
		}},
		{"replace the consumer (keeps its keys)", func() error {
			_, err := Put(ctx, c, Consumers, config.Consumer{Name: "ci", Groups: []string{"c"}}, Upsert, Precondition{}, actor)
			return err
		}},
		{"create a third api key", func() error { _, _, _, err := c.CreateAPIKey(ctx, "ci", actor); return err }},
		{"purge the route's cache", func() error { _, _, err := c.PurgeRouteCache(ctx, "r", Precondition{}, actor); return err }},
		{"change the route", func() error {
			_, err := Put(ctx, c, Routes, config.Route{Name: "r", Paths: []string{"/moved"}, Service: "s"}, Upsert, Precondition{}, actor)
			return err
		}},
		{"global rate limit", func() error {
			_, err := c.PutGlobal(ctx, config.Global{RateLimit: &config.RateLimit{Limit: 5, Window: config.Duration(time.Second)}}, nil, actor)
			return err
		}},
		{"import", func() error {
			cfg, _ := c.Export()
			cfg.Routes = append(cfg.Routes, &config.Route{Name: "r2", Paths: []string{"/two"}, Service: "s"})
			_, err := c.Import(ctx, cfg, false, nil, actor)
			return err
		}},
		{"delete the route", func() error { _, err := Delete(ctx, c, Routes, "r", Precondition{}, actor); return err }},
	}
	check("start")
	for _, s := range steps {
		must(s.do())
		check(s.name)
	}
}

// TestNextOfCopiesEveryCollection: every collection of config.Config
// (found by reflection, so that a new kind cannot be forgotten) is a copy
// in nextOf's result, which mutations append to and assign into.
func TestNextOfCopiesEveryCollection(t *testing.T) {
	var cur config.Config
	v := reflect.ValueOf(&cur).Elem()
	for i := range v.NumField() {
		if f := v.Field(i); f.Kind() == reflect.Slice {
			f.Set(reflect.MakeSlice(f.Type(), 1, 1))
		}
	}
	next := reflect.ValueOf(nextOf(&cur)).Elem()
	for i := range v.NumField() {
		if f := v.Field(i); f.Kind() == reflect.Slice && f.Pointer() == next.Field(i).Pointer() {
			t.Errorf("nextOf shares Config.%s with the published configuration", v.Type().Field(i).Name)
		}
	}
}
