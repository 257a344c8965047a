package activities

import (
	"maps"
	"reflect"
	"slices"
	"testing"

	"github.com/paystream/paystream/contract"
)

// TestEveryContractActivityIsRegistered: the worker registers exactly the
// contract's activities, each under its name, and every exported method
// of *Activities is one of them (an exported helper would read as an
// activity to a newcomer).
func TestEveryContractActivityIsRegistered(t *testing.T) {
	a := &Activities{}
	got := slices.Sorted(maps.Keys(a.byName()))
	if want := slices.Sorted(slices.Values(contract.Activities)); !slices.Equal(got, want) {
		t.Errorf("registered %v, want the contract's %v", got, want)
	}
	typ := reflect.TypeFor[*Activities]()
	for i := range typ.NumMethod() {
		if name := typ.Method(i).Name; !slices.Contains(contract.Activities, name) {
			t.Errorf("*Activities has exported method %s, which is no activity", name)
		}
	}
}
