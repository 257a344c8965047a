package engine

import (
	"testing"
	"time"
)

// TestCommitMetadataCarriesTheLoadTime: the time a commit's metadata
// records reads back to the nanosecond; metadata that is not a load's
// reads as none.
func TestCommitMetadataCarriesTheLoadTime(t *testing.T) {
	at := time.Date(2026, 12, 6, 1, 2, 3, 456789012, time.FixedZone("x", 3600))
	got, ok := LoadedAt(CommitMetadata(at))
	if !ok || !got.Equal(at) {
		t.Errorf("LoadedAt(CommitMetadata(%s)) = %s, %v", at, got, ok)
	}
	for _, md := range []string{"", "loaded_at=", "loaded_at=yesterday", "written by a tool"} {
		if got, ok := LoadedAt(md); ok {
			t.Errorf("LoadedAt(%q) = %s, want none", md, got)
		}
	}
}
