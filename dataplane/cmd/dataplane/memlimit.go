package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
)

// The collector's memory. --gc-percent 400 (defaultGCPercent) lets the heap
// grow to five times the live heap between collections: harmless at a few
// thousand routes (a live heap of some MB), but at 100,000 routes the live
// heap is ~150 MB and the heap could reach ~750 MB, over the 512 MiB limit
// of the Kubernetes manifest, and the kernel would kill the data plane. A
// soft memory limit (Go's GOMEMLIMIT) makes the collector run as often as
// it must to stay under it, whatever GOGC says; so a data plane in a
// container with a memory limit sets one itself, at 90% of the container's
// (the rest is for what the Go heap does not count: stacks, the runtime,
// the kernel's buffers), unless GOMEMLIMIT is set (any value, "off"
// included, is the operator's word).

// setMemoryLimit applies the soft memory limit from the cgroup under root
// (the container's own with cgroup namespaces, the default of Docker and
// Kubernetes) and returns it, 0 when none was set.
func setMemoryLimit(log *slog.Logger, root string) int64 {
	if _, ok := os.LookupEnv("GOMEMLIMIT"); ok {
		return 0
	}
	limit, ok := cgroupMemoryLimit(root)
	if !ok {
		return 0
	}
	soft := limit / 10 * 9
	debug.SetMemoryLimit(soft)
	log.Info("soft memory limit set from the container's", "cgroup_bytes", limit, "gomemlimit_bytes", soft)
	return soft
}

// cgroupMemoryLimit reads the memory limit of the cgroup mounted at root:
// memory.max (cgroup v2; "max" is none) or memory/memory.limit_in_bytes
// (v1, where none is a number near 2^63).
func cgroupMemoryLimit(root string) (int64, bool) {
	for _, f := range []string{"memory.max", filepath.Join("memory", "memory.limit_in_bytes")} {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil || n <= 0 || n >= 1<<60 {
			return 0, false
		}
		return n, true
	}
	return 0, false
}
