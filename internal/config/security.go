package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/paystream/paystream/internal/kafkalog"
)

// loadSecurity reads the certificates and secrets the settings name. Its
// errors name files and settings, never a secret's value.
func (c *Config) loadSecurity() error {
	var err error
	if c.KafkaTLS || c.KafkaTLSCA != "" || c.KafkaTLSCert != "" || c.KafkaTLSKey != "" {
		if c.kafkaTLS, err = tlsConfig(c.KafkaTLSCA, c.KafkaTLSCert, c.KafkaTLSKey, ""); err != nil {
			return fmt.Errorf("kafka-tls: %w", err)
		}
	}
	if c.kafkaSASL, err = c.saslMechanism(); err != nil {
		return err
	}
	if err := c.registrySecurity(); err != nil {
		return err
	}
	c.temporalAPIKey, err = secret(c.TemporalAPIKeyFile, SecretTemporalAPIKey)
	if err != nil {
		return fmt.Errorf("temporal-api-key-file: %w", err)
	}
	// A bad profile file fails even when nothing is taken from it, so
	// that a mistake in it is never silently passed over.
	profile, err := temporalProfile()
	if err != nil {
		return err
	}
	if c.TemporalTLSCert != "" || c.TemporalTLSKey != "" || c.TemporalTLSCA != "" || c.TemporalTLSServerName != "" || c.temporalAPIKey != "" {
		if c.temporalTLS, err = tlsConfig(c.TemporalTLSCA, c.TemporalTLSCert, c.TemporalTLSKey, c.TemporalTLSServerName); err != nil {
			return fmt.Errorf("temporal-tls: %w", err)
		}
		return nil
	}
	c.temporalTLS, c.temporalAPIKey, err = profileSecurity(profile, c.TemporalAddress)
	return err
}

func (c *Config) saslMechanism() (*kafkalog.SASL, error) {
	if c.KafkaSASLMechanism == "" {
		return nil, nil
	}
	if c.KafkaSASLUsername == "" {
		return nil, errors.New("kafka-sasl-mechanism needs kafka-sasl-username")
	}
	password, err := secret(c.KafkaSASLPasswordFile, SecretKafkaSASLPassword)
	if err != nil {
		return nil, fmt.Errorf("kafka-sasl-password-file: %w", err)
	}
	if password == "" {
		return nil, fmt.Errorf("kafka-sasl-mechanism needs a password: kafka-sasl-password-file or $%s", SecretKafkaSASLPassword)
	}
	m, err := kafkalog.NewSASL(c.KafkaSASLMechanism, c.KafkaSASLUsername, password)
	if err != nil {
		return nil, fmt.Errorf("kafka-sasl-mechanism: %w", err)
	}
	return m, nil
}

// registrySecurity checks the registry's URL and reads its password and
// CA. Credentials in the URL are refused: a URL reaches logs and error
// messages, a password file does not.
func (c *Config) registrySecurity() error {
	if c.SchemaRegistry == "" {
		return nil
	}
	u, err := url.Parse(c.SchemaRegistry)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("schema-registry must be an http:// or https:// URL")
	}
	if u.User != nil {
		return errors.New("schema-registry must not hold credentials: give the user with schema-registry-user and the password in schema-registry-password-file or $" + SecretSchemaRegistryPassword)
	}
	if c.registryPassword, err = secret(c.SchemaRegistryPasswordFile, SecretSchemaRegistryPassword); err != nil {
		return fmt.Errorf("schema-registry-password-file: %w", err)
	}
	if c.SchemaRegistryCA != "" {
		if c.registryTLS, err = tlsConfig(c.SchemaRegistryCA, "", "", ""); err != nil {
			return fmt.Errorf("schema-registry-ca: %w", err)
		}
	}
	return nil
}

// secret is the content of file, or else of the environment variable env,
// trimmed of surrounding space (files end in a newline).
func secret(file, env string) (string, error) {
	if file == "" {
		return strings.TrimSpace(os.Getenv(env)), nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// tlsConfig builds a client TLS configuration: the CA file's roots (or the
// system's), and a client certificate when both its files are given.
func tlsConfig(caFile, certFile, keyFile, serverName string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate", caFile)
		}
	}
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("a client certificate needs both its cert and key files")
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// minSnapshotKey is the shortest snapshot key taken: an HMAC-SHA256 key
// shorter than its 32-byte output weakens it.
const minSnapshotKey = 32

// SnapshotKeys reads the dedup snapshot keys (engine.Config.SnapshotKeys)
// from file: one a line, the newest first, which signs; the others are
// still accepted, so a key is rotated by putting the new one first and
// dropping the old one once every snapshot has been rewritten (30 s).
// Blank lines and lines starting with # are skipped; each key is the
// line's bytes, at least 32 of them (e.g. `openssl rand -hex 32`). No
// file, no keys. Errors name the file and line, never a key.
func SnapshotKeys(file string) ([][]byte, error) {
	if file == "" {
		return nil, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var keys [][]byte
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if len(line) < minSnapshotKey {
			return nil, fmt.Errorf("%s line %d: a snapshot key must be at least %d bytes, this one has %d", file, i+1, minSnapshotKey, len(line))
		}
		keys = append(keys, []byte(line))
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s holds no snapshot key", file)
	}
	return keys, nil
}
