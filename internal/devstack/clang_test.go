package devstack

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
)

// fakeSystem has the commands in have; running apt-get install adds clang.
func fakeSystem(euid int, have ...string) (system, *[]string) {
	on := map[string]bool{}
	for _, h := range have {
		on[h] = true
	}
	var ran []string
	return system{
		euid: euid,
		lookPath: func(name string) (string, error) {
			if on[name] {
				return "/usr/bin/" + name, nil
			}
			return "", errors.New("not found")
		},
		run: func(_ context.Context, _ io.Writer, _ []string, name string, args ...string) error {
			ran = append(ran, name+" "+strings.Join(args, " "))
			if len(args) > 0 && args[0] == "install" {
				on["clang"], on["clang++"] = true, true
			}
			return nil
		},
	}, &ran
}

func TestEnsureClang(t *testing.T) {
	cases := []struct {
		name    string
		euid    int
		have    []string
		wantErr string // "" for none
		wantRun string
	}{
		{"present", 1000, []string{"clang", "clang++"}, "", ""},
		{"root on Debian installs it", 0, []string{"apt-get"}, "", "apt-get update -qq; apt-get install -y -qq clang"},
		{"not root says what to run", 1000, []string{"apt-get"}, "run `sudo apt-get install -y clang` and try again", ""},
		{"no apt-get", 0, nil, "install clang with your system's package manager", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sys, ran := fakeSystem(c.euid, c.have...)
			err := ensureClang(context.Background(), io.Discard, sys)
			if c.wantErr == "" && err != nil || c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)) {
				t.Fatalf("err %v, want %q", err, c.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "\n") {
				t.Errorf("the message is not one line: %q", err)
			}
			if got := strings.Join(*ran, "; "); got != c.wantRun {
				t.Errorf("ran %q, want %q", got, c.wantRun)
			}
		})
	}
}
