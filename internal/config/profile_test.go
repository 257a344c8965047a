package config_test

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/paystream/paystream/internal/config"
	"github.com/paystream/paystream/internal/devstack/devstacktest"
)

// TestTemporalProfileIsTheLastFallback: Temporal's client config profile
// ($TEMPORAL_CONFIG_FILE, profile $TEMPORAL_PROFILE or "default") gives
// the address and namespace when no flag, PAYSTREAM_ variable or
// TEMPORAL_ADDRESS/TEMPORAL_NAMESPACE does; its TLS and API key are used
// only with its own address and when paystream's own are not given; a
// profile file that does not parse, or a named profile it lacks, is one
// line that shows no key.
func TestTemporalProfileIsTheLastFallback(t *testing.T) {
	for _, v := range []string{"TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "TEMPORAL_PROFILE", config.EnvName("temporal-address"), config.EnvName("temporal-namespace"), config.SecretTemporalAPIKey} {
		t.Setenv(v, "")
		os.Unsetenv(v)
	}
	certs := devstacktest.NewCerts(t)
	file := filepath.Join(t.TempDir(), "temporal.toml")
	if err := os.WriteFile(file, []byte(fmt.Sprintf(`
[profile.default]
address = "default.example:7233"
namespace = "ns-default"

[profile.cloud]
address = "ns-cloud.acct.tmprl.cloud:7233"
namespace = "ns-cloud.acct"
api_key = "profile-api-key-not-to-be-shown"

[profile.mtls]
address = "temporal.internal:7233"
namespace = "payments"
[profile.mtls.tls]
client_cert_path = %q
client_key_path = %q
server_ca_cert_path = %q
server_name = "frontend.temporal.internal"
`, certs.ClientCertFile, certs.ClientKeyFile, certs.CAFile)), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TEMPORAL_CONFIG_FILE", file)
	parse := func(args ...string) config.Config {
		t.Helper()
		c := config.Default()
		fs := flag.NewFlagSet("worker", flag.ContinueOnError)
		c.RegisterFlags(fs)
		if err := config.Parse(fs, args); err != nil {
			t.Fatal(err)
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		return c
	}
	check := func(what string, c config.Config, address, namespace string) {
		t.Helper()
		if c.TemporalAddress != address || c.Namespace != namespace {
			t.Errorf("%s: %q %q, want %q %q", what, c.TemporalAddress, c.Namespace, address, namespace)
		}
	}

	c := parse()
	check("the default profile alone", c, "default.example:7233", "ns-default")
	if c.TemporalTLS() != nil || c.TemporalAPIKey() != "" {
		t.Errorf("a profile without TLS or key: TLS %v, key set %v", c.TemporalTLS() != nil, c.TemporalAPIKey() != "")
	}
	t.Setenv("TEMPORAL_ADDRESS", "temporal-cli.example:7233")
	check("TEMPORAL_ADDRESS over the profile", parse(), "temporal-cli.example:7233", "ns-default")
	t.Setenv("TEMPORAL_NAMESPACE", "ns-cli")
	check("TEMPORAL_NAMESPACE over the profile", parse(), "temporal-cli.example:7233", "ns-cli")
	t.Setenv(config.EnvName("temporal-address"), "paystream.example:7233")
	check("PAYSTREAM_TEMPORAL_ADDRESS over TEMPORAL_ADDRESS", parse(), "paystream.example:7233", "ns-cli")
	check("flags over everything", parse("--temporal-address", "flag.example:7233", "--temporal-namespace", "ns-flag"), "flag.example:7233", "ns-flag")
	for _, v := range []string{"TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", config.EnvName("temporal-address")} {
		os.Unsetenv(v)
	}

	t.Setenv("TEMPORAL_PROFILE", "cloud")
	c = parse()
	check("TEMPORAL_PROFILE=cloud", c, "ns-cloud.acct.tmprl.cloud:7233", "ns-cloud.acct")
	if c.TemporalAPIKey() != "profile-api-key-not-to-be-shown" || c.TemporalTLS() == nil {
		t.Errorf("the cloud profile's key: key taken %v, TLS %v; want both (an API key implies TLS)", c.TemporalAPIKey() == "profile-api-key-not-to-be-shown", c.TemporalTLS() != nil)
	}
	c = parse("--temporal-address", "elsewhere.example:7233")
	if c.TemporalAPIKey() != "" || c.TemporalTLS() != nil {
		t.Errorf("another address than the profile's: key sent %v, TLS %v; want neither", c.TemporalAPIKey() != "", c.TemporalTLS() != nil)
	}
	t.Setenv(config.SecretTemporalAPIKey, "own-key")
	if c = parse(); c.TemporalAPIKey() != "own-key" {
		t.Errorf("$%s given: the profile's key was used", config.SecretTemporalAPIKey)
	}
	os.Unsetenv(config.SecretTemporalAPIKey)

	t.Setenv("TEMPORAL_PROFILE", "mtls")
	c = parse()
	check("TEMPORAL_PROFILE=mtls", c, "temporal.internal:7233", "payments")
	if tc := c.TemporalTLS(); tc == nil || len(tc.Certificates) != 1 || tc.RootCAs == nil || tc.ServerName != "frontend.temporal.internal" {
		t.Errorf("the mtls profile's TLS: %+v, want its client certificate, CA and server name", tc)
	}
	if c = parse("--temporal-tls-server-name", "own.example"); c.TemporalTLS() == nil || len(c.TemporalTLS().Certificates) != 0 || c.TemporalTLS().ServerName != "own.example" {
		t.Errorf("paystream's own TLS setting given: the profile's TLS was mixed in")
	}

	for _, tc := range []struct {
		name, profile, content, want string
	}{
		{"a missing profile", "nosuch", "", "nosuch"},
		{"a file that does not parse", "", "[profile.default]\napi_key = profile-api-key-not-to-be-shown\n", file},
		{"a value of the wrong type", "", "[profile.default]\napi_key = 1234\n", file},
	} {
		if tc.content != "" {
			if err := os.WriteFile(file, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		t.Setenv("TEMPORAL_PROFILE", tc.profile)
		c := config.Default()
		fs := flag.NewFlagSet("worker", flag.ContinueOnError)
		c.RegisterFlags(fs)
		if err := config.Parse(fs, nil); err != nil {
			t.Fatal(err)
		}
		err := c.Validate()
		t.Logf("%s: %v", tc.name, err)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") || strings.Contains(err.Error(), "not-to-be-shown") || config.ExitCode(err) != config.ExitFailure {
			t.Errorf("%s: %v, want one line naming %s without the key (exit %d)", tc.name, err, tc.want, config.ExitFailure)
		}
	}

	t.Setenv("TEMPORAL_PROFILE", "")
	t.Setenv("TEMPORAL_CONFIG_FILE", filepath.Join(t.TempDir(), "absent.toml"))
	check("no profile file", parse(), config.DefaultTemporalAddress, config.DefaultNamespace)
}
