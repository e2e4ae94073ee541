package testutil

// DefaultComposeVersion is the Docker Compose release scripts/ensure-compose.sh
// builds by default.
const DefaultComposeVersion = "v5.6.0"

// ComposeBinary returns the path of the Docker Compose CLI used by tests:
// $COMPOSE_BIN if set, else the binary scripts/ensure-compose.sh caches in
// ${PORTICO_CACHE:-$HOME/.cache/portico}/docker-compose-${COMPOSE_VERSION:-v5.6.0}.
func ComposeBinary() (string, error) {
	return cachedBinary("docker compose", "COMPOSE_BIN", "COMPOSE_VERSION", "docker-compose", DefaultComposeVersion,
		"run scripts/ensure-compose.sh (or make compose / make test) to build it, or point COMPOSE_BIN at a docker-compose binary")
}
