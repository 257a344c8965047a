package activities

import (
	"reflect"
	"slices"
	"testing"
)

// TestEveryExportedMethodIsAnActivity: the worker registers *Activities
// whole, so each exported method becomes an activity anyone with access
// to the task queue may schedule. Only these are meant to be; a helper
// must be a function or unexported.
func TestEveryExportedMethodIsAnActivity(t *testing.T) {
	want := []string{"CommitOffsets", "CreateStreams", "DecideReplay", "Dedup", "Enrich", "HoldMembership", "Load", "LoadReplay",
		"NewPartitions", "PlanBatch", "TerminateBatch"}
	var got []string
	typ := reflect.TypeFor[*Activities]()
	for i := range typ.NumMethod() {
		got = append(got, typ.Method(i).Name)
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("exported methods of *Activities %v, want the activities %v", got, want)
	}
}
