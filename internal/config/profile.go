package config

import (
	"crypto/tls"
	"errors"
	"fmt"
	"os"

	"github.com/BurntSushi/toml"
	"go.temporal.io/sdk/contrib/envconfig"
)

// temporalProfile is the Temporal client config profile the Temporal CLI
// and SDKs read: profile $TEMPORAL_PROFILE (else "default") of the TOML
// file $TEMPORAL_CONFIG_FILE (else temporalio/temporal.toml in the user's
// config directory). No file is an empty profile; the TEMPORAL_* variables
// that override its fields are not applied here, as paystream reads only
// TEMPORAL_ADDRESS and TEMPORAL_NAMESPACE (LookupEnv). Errors name the
// file and profile, never a value from it.
func temporalProfile() (envconfig.ClientConfigProfile, error) {
	file := os.Getenv("TEMPORAL_CONFIG_FILE")
	if file == "" {
		file = envconfig.DefaultConfigFilePath()
	}
	p, err := envconfig.LoadClientConfigProfile(envconfig.LoadClientConfigProfileOptions{ConfigFilePath: file, DisableEnv: true})
	var syntax toml.ParseError
	if errors.As(err, &syntax) {
		// The parser's message may quote the text it stopped at, which
		// can be an API key or a private key.
		return p, fmt.Errorf("temporal client config %s: line %d (after key %s) is not valid TOML", file, syntax.Position.Line, syntax.LastKey)
	}
	if err != nil {
		return p, fmt.Errorf("temporal client config %s: %w", file, err)
	}
	return p, nil
}

// profileSecurity is the profile's TLS and API key for address: none
// unless address is the profile's own, so that its credentials never go
// to a server it does not name.
func profileSecurity(p envconfig.ClientConfigProfile, address string) (*tls.Config, string, error) {
	if p.Address == "" || p.Address != address {
		return nil, "", nil
	}
	opts, err := p.ToClientOptions(envconfig.ToClientOptionsRequest{})
	if err != nil {
		return nil, "", fmt.Errorf("temporal client config profile: %w", err)
	}
	if t := opts.ConnectionOptions.TLS; t != nil && t.MinVersion < tls.VersionTLS12 {
		t.MinVersion = tls.VersionTLS12
	}
	return opts.ConnectionOptions.TLS, p.APIKey, nil
}
