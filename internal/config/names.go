package config

import (
	"fmt"
	"os"
	"regexp"
)

// The names paystream puts into Temporal visibility queries and SQL, held
// to the rules of the systems that own them, so that no setting can reach
// a query as anything but a name.
var (
	// Kafka: letters, digits, '.', '_' and '-', at most 249 characters.
	topicName = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)
	// Google Cloud project IDs: 6 to 30 lowercase letters, digits or
	// hyphens, starting with a letter and not ending with a hyphen; older
	// projects may carry a domain prefix (example.com:my-project).
	projectID = regexp.MustCompile(`^([a-z0-9.-]+:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$`)
	// BigQuery datasets: letters, digits and underscores, at most 1,024.
	datasetName = regexp.MustCompile(`^[a-zA-Z0-9_]+$`)
)

// validateNames reports the first of the topic, project and dataset that
// its system would refuse.
func (c *Config) validateNames() error {
	switch {
	case !topicName.MatchString(c.Topic) || c.Topic == "." || c.Topic == "..":
		return fmt.Errorf("topic %q is not a Kafka topic name: letters, digits, '.', '_' and '-', at most 249", c.Topic)
	case !projectID.MatchString(c.BigQueryProject):
		return fmt.Errorf("bigquery-project %q is not a project ID: 6 to 30 lowercase letters, digits and hyphens, starting with a letter, not ending with a hyphen", c.BigQueryProject)
	case !datasetName.MatchString(c.BigQueryDataset) || len(c.BigQueryDataset) > 1024:
		return fmt.Errorf("bigquery-dataset %q is not a dataset name: letters, digits and underscores, at most 1,024", c.BigQueryDataset)
	}
	return nil
}

// envFallbacks are variables other tools read for the same setting, read
// after paystream's own: the Temporal CLI's address and namespace.
var envFallbacks = map[string]string{
	"temporal-address":   "TEMPORAL_ADDRESS",
	"temporal-namespace": "TEMPORAL_NAMESPACE",
}

// LookupEnv is the value the environment gives flag flagName: variable
// primary (EnvName, or a command's own name for it), else the fallback
// other tools use for the same setting, else for the Temporal address and
// namespace Temporal's client config profile (temporalProfile; a file
// that cannot be read is left to Validate to report); from names where it
// came from, for error messages.
func LookupEnv(flagName, primary string) (value, from string, ok bool) {
	if v, ok := os.LookupEnv(primary); ok {
		return v, primary, true
	}
	name, ok := envFallbacks[flagName]
	if !ok {
		return "", "", false
	}
	if v, ok := os.LookupEnv(name); ok {
		return v, name, true
	}
	if p, err := temporalProfile(); err == nil {
		v := map[string]string{"temporal-address": p.Address, "temporal-namespace": p.Namespace}[flagName]
		if v != "" {
			return v, "TEMPORAL_PROFILE", true
		}
	}
	return "", "", false
}
