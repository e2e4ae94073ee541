module github.com/portico-gw/portico/dataplane

go 1.26.0

require github.com/portico-gw/portico/shared v0.0.0

require (
	github.com/google/go-cmp v0.7.0 // indirect
	github.com/prometheus/client_golang v1.25.0 // indirect
	golang.org/x/sync v0.25.0 // indirect
)

replace github.com/portico-gw/portico/shared => ../shared
