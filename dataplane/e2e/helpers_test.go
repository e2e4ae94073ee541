package e2e

import "github.com/portico-gw/portico/shared/config"

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
