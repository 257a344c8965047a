package config

import (
	"flag"
	"strings"
	"testing"
)

// TestNamesAreValidatedBeforeUse: the topic, project and dataset end up
// in Temporal visibility queries and in SQL, so a name the systems
// themselves would refuse is refused at start, in one line naming the
// setting and the rule.
func TestNamesAreValidatedBeforeUse(t *testing.T) {
	long := strings.Repeat("t", 249)
	for _, c := range []struct {
		set  func(*Config)
		ok   bool
		name string // what the error line names
	}{
		{func(c *Config) { c.Topic = "payments.v1_eu-west" }, true, ""},
		{func(c *Config) { c.Topic = long }, true, ""},
		{func(c *Config) { c.Topic = long + "t" }, false, "topic"},
		{func(c *Config) { c.Topic = "pay' OR KafkaTopic != '" }, false, "topic"},
		{func(c *Config) { c.Topic = "pay ments" }, false, "topic"},
		{func(c *Config) { c.Topic = ".." }, false, "topic"},
		{func(c *Config) { c.BigQueryProject = "my-project-123" }, true, ""},
		{func(c *Config) { c.BigQueryProject = "example.com:my-project" }, true, ""},
		{func(c *Config) { c.BigQueryProject = "proj`; DROP TABLE x; --" }, false, "bigquery-project"},
		{func(c *Config) { c.BigQueryProject = "My-Project" }, false, "bigquery-project"},
		{func(c *Config) { c.BigQueryProject = "1project" }, false, "bigquery-project"},
		{func(c *Config) { c.BigQueryProject = "short" }, false, "bigquery-project"},
		{func(c *Config) { c.BigQueryProject = "trailing-" }, false, "bigquery-project"},
		{func(c *Config) { c.BigQueryProject = strings.Repeat("p", 31) }, false, "bigquery-project"},
		{func(c *Config) { c.BigQueryDataset = "Payments_EU_2" }, true, ""},
		{func(c *Config) { c.BigQueryDataset = "payments-eu" }, false, "bigquery-dataset"},
		{func(c *Config) { c.BigQueryDataset = "payments.x" }, false, "bigquery-dataset"},
		{func(c *Config) { c.BigQueryDataset = strings.Repeat("d", 1025) }, false, "bigquery-dataset"},
	} {
		cfg := Default()
		c.set(&cfg)
		err := cfg.Validate()
		if (err == nil) != c.ok || err != nil && (!strings.Contains(err.Error(), c.name) || strings.Contains(err.Error(), "\n")) {
			t.Errorf("topic %.20q project %q dataset %.20q: %v, want ok=%v naming %s", cfg.Topic, cfg.BigQueryProject, cfg.BigQueryDataset, err, c.ok, c.name)
		}
	}
}

// TestTemporalVariablesAreFallbacks: TEMPORAL_ADDRESS and
// TEMPORAL_NAMESPACE, which the Temporal CLI reads, set the address and
// namespace when PAYSTREAM_'s own variables do not; a flag wins over both.
func TestTemporalVariablesAreFallbacks(t *testing.T) {
	parse := func(args ...string) Config {
		t.Helper()
		c := Default()
		fs := flag.NewFlagSet("worker", flag.ContinueOnError)
		c.RegisterFlags(fs)
		if err := Parse(fs, args); err != nil {
			t.Fatal(err)
		}
		return c
	}
	t.Setenv("TEMPORAL_ADDRESS", "temporal.example:7233")
	t.Setenv("TEMPORAL_NAMESPACE", "payments-prod")
	if c := parse(); c.TemporalAddress != "temporal.example:7233" || c.Namespace != "payments-prod" {
		t.Errorf("with TEMPORAL_* only: %q %q", c.TemporalAddress, c.Namespace)
	}
	t.Setenv(EnvName("temporal-address"), "paystream.example:7233")
	if c := parse(); c.TemporalAddress != "paystream.example:7233" || c.Namespace != "payments-prod" {
		t.Errorf("with PAYSTREAM_TEMPORAL_ADDRESS too: %q %q", c.TemporalAddress, c.Namespace)
	}
	if c := parse("--temporal-namespace", "flagged"); c.Namespace != "flagged" {
		t.Errorf("a flag: %q", c.Namespace)
	}
	if v, from, ok := LookupEnv("temporal-namespace", EnvName("temporal-namespace")); !ok || v != "payments-prod" || from != "TEMPORAL_NAMESPACE" {
		t.Errorf("LookupEnv: %q from %q (%v)", v, from, ok)
	}
}
