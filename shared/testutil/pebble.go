package testutil

import (
	"fmt"
	"os"
	"path/filepath"
)

// DefaultPebbleVersion is the Pebble release scripts/ensure-pebble.sh
// builds by default.
const DefaultPebbleVersion = "v2.10.3"

// PebbleBinaries returns the paths of Pebble (the ACME test server) and
// pebble-challtestsrv (its DNS helper, beside it) used by tests: $PEBBLE_BIN
// if set, else what scripts/ensure-pebble.sh caches in
// ${PORTICO_CACHE:-$HOME/.cache/portico}/pebble-${PEBBLE_VERSION:-v2.10.3}/.
func PebbleBinaries() (pebble, challtestsrv string, err error) {
	const hint = "run scripts/ensure-pebble.sh (or make pebble / make test) to build them, or point PEBBLE_BIN at a pebble binary with pebble-challtestsrv beside it"
	pebble = os.Getenv("PEBBLE_BIN")
	if pebble == "" {
		cache := os.Getenv("PORTICO_CACHE")
		if cache == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return "", "", fmt.Errorf("pebble: no PEBBLE_BIN and no home directory (%v); %s", err, hint)
			}
			cache = filepath.Join(home, ".cache", "portico")
		}
		version := os.Getenv("PEBBLE_VERSION")
		if version == "" {
			version = DefaultPebbleVersion
		}
		pebble = filepath.Join(cache, "pebble-"+version, "pebble")
	}
	challtestsrv = filepath.Join(filepath.Dir(pebble), "pebble-challtestsrv")
	for _, p := range []string{pebble, challtestsrv} {
		if !isExecutable(p) {
			return "", "", fmt.Errorf("pebble: %s is not an executable file; %s", p, hint)
		}
	}
	return pebble, challtestsrv, nil
}
