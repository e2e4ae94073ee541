package e2e

import (
	"encoding/json"
	"net/http"

	"github.com/portico-gw/portico/shared/config"
)

func svc(urls ...string) config.Service {
	s := config.Service{}
	for _, u := range urls {
		s.Targets = append(s.Targets, config.Target{URL: u})
	}
	return s
}

func route(path, service string) config.Route {
	return config.Route{Paths: []string{path}, Service: service, StripPrefix: true}
}

func jsonDecode(resp *http.Response, v any) error {
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}
