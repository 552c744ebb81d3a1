package cluster

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestHostKernelSettingsComparison: the live suite's teardown check fails
// on any setting whose value changed or vanished, and on nothing else.
func TestHostKernelSettingsComparison(t *testing.T) {
	before := map[string]string{"/proc/sys/kernel/panic": "1", "/proc/sys/vm/overcommit_memory": "0"}
	for _, tc := range []struct {
		name    string
		after   map[string]string
		changed string
	}{
		{"unchanged", map[string]string{"/proc/sys/kernel/panic": "1", "/proc/sys/vm/overcommit_memory": "0"}, ""},
		{"written as a kubelet would", map[string]string{"/proc/sys/kernel/panic": "10", "/proc/sys/vm/overcommit_memory": "0"}, "/proc/sys/kernel/panic"},
		{"gone", map[string]string{"/proc/sys/kernel/panic": "1"}, "/proc/sys/vm/overcommit_memory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CompareHostKernelSettings(before, tc.after)
			if tc.changed == "" {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.changed)
		})
	}
}

// TestHostKernelSettingsRead: every setting a node could change is read
// from this host (the conntrack module's only when it is loaded).
func TestHostKernelSettingsRead(t *testing.T) {
	values, err := HostKernelSettings()
	require.NoError(t, err)
	for _, path := range hostKernelSettings {
		if !strings.HasPrefix(path, "/sys/module/") {
			assert.NotEmpty(t, values[path], path)
		}
	}
}
