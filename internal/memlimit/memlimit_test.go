package memlimit

import (
	"runtime/debug"
	"testing"
)

func TestParse(t *testing.T) {
	for in, want := range map[string]int64{
		"300MiB": 300 << 20, "1GiB": 1 << 30, "512MB": 512e6, "768Mi": 768 << 20, "268435456": 268435456, "64KiB": 64 << 10,
	} {
		got, err := Parse(in)
		if err != nil || got != want {
			t.Errorf("Parse(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "lots", "-1MiB", "1.5GiB", "99999999999GiB"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q): no error", bad)
		}
	}
}

func TestParseCgroup(t *testing.T) {
	for in, want := range map[string]int64{"max\n": 0, "805306368\n": 805306368, "9223372036854771712\n": 0} {
		got, err := parseCgroup(in)
		if err != nil || got != want {
			t.Errorf("parseCgroup(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	if _, err := parseCgroup("junk"); err == nil {
		t.Error("parseCgroup(junk): no error")
	}
}

func TestApply(t *testing.T) {
	t.Setenv("GOMEMLIMIT", "")
	before := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(before)
	set, err := Apply(300 << 20)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(float64(300<<20) * Share); set != want || debug.SetMemoryLimit(-1) != want {
		t.Errorf("Apply(300 MiB) set %d, the runtime has %d; want %d", set, debug.SetMemoryLimit(-1), want)
	}
	t.Setenv("GOMEMLIMIT", "1GiB")
	if set, _ := Apply(300 << 20); set != 0 {
		t.Errorf("with GOMEMLIMIT in the environment Apply set %d; it should leave the runtime's", set)
	}
}
