package config_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/paystream/paystream/internal/config"
	"github.com/paystream/paystream/internal/devstack/devstacktest"
	"github.com/paystream/paystream/internal/kafkalog"
	"github.com/paystream/paystream/internal/simulation"
	"github.com/paystream/paystream/internal/testtier"
)

// TestKafkaOverTLSAndSASL runs paystream's Kafka paths — produce (a
// Writer), high watermarks and offset commits (a Client), reading a range
// from the partition leader (a Dialer) — against a kfake broker that
// demands TLS and SASL, configured as an operator would: flags for the CA
// and mechanism, the password from the environment or a file. A wrong
// password and a plaintext client are refused.
func TestKafkaOverTLSAndSASL(t *testing.T) {
	testtier.NeedsServers(t)
	certs := devstacktest.NewCerts(t)
	caFile, serverTLS := certs.CAFile, certs.Server
	const topic = "payments"
	for _, mech := range []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"} {
		t.Run(mech, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, topic), kfake.TLS(serverTLS),
				kfake.EnableSASL(), kfake.Superuser(mech, "paystream", "s3cret-"+mech))
			if err != nil {
				t.Fatal(err)
			}
			defer cluster.Close()

			cfg := config.Default()
			cfg.KafkaBrokers = cluster.ListenAddrs()
			cfg.KafkaTLSCA, cfg.KafkaSASLMechanism, cfg.KafkaSASLUsername = caFile, mech, "paystream"
			t.Setenv(config.SecretKafkaSASLPassword, "s3cret-"+mech)
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			kc := cfg.Kafka()
			if s := kc.String(); strings.Contains(s, "s3cret") || !strings.Contains(s, "tls+sasl/"+mech) {
				t.Errorf("Cluster prints as %q", s)
			}
			m, err := simulation.Produce(ctx, simulation.DefaultOptions(), simulation.ProduceOptions{Kafka: kc, Topic: topic, Events: 500})
			if err != nil {
				t.Fatalf("produce over TLS and SASL: %v", err)
			}
			hws, err := kafkalog.HighWatermarks(ctx, kc, topic)
			if err != nil || hws[0]+hws[1] != 500 {
				t.Fatalf("high watermarks %v, %v; want 500 records", hws, err)
			}
			read := 0
			if err := kafkalog.ReadRange(ctx, kc, topic, 0, 0, hws[0], func(kafkalog.Record) error { read++; return nil }); err != nil || int64(read) != hws[0] {
				t.Fatalf("read %d of partition 0's %d records: %v", read, hws[0], err)
			}
			tally, err := simulation.ReadBack(ctx, kc, m, cfg.AllowedLateness)
			if err != nil || tally.Loaded != m.UniqueIDs || tally.Duplicates != m.Duplicates {
				t.Fatalf("read back %d loaded and %d duplicates, the manifest says %d and %d: %v", tally.Loaded, tally.Duplicates, m.UniqueIDs, m.Duplicates, err)
			}
			if _, err := kafkalog.CommittedOffsets(ctx, kc, cfg.ConsumerGroup, topic, 2); err != nil {
				t.Fatalf("fetch committed offsets: %v", err)
			}

			// The password from a file works as the variable does.
			pwFile := filepath.Join(t.TempDir(), "password")
			if err := os.WriteFile(pwFile, []byte("s3cret-"+mech+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			t.Setenv(config.SecretKafkaSASLPassword, "")
			fromFile := cfg
			fromFile.KafkaSASLPasswordFile = pwFile
			if err := fromFile.Validate(); err != nil {
				t.Fatal(err)
			}
			if _, err := kafkalog.Partitions(ctx, fromFile.Kafka(), topic); err != nil {
				t.Errorf("with the password from a file: %v", err)
			}

			short, cancelShort := context.WithTimeout(ctx, 5*time.Second)
			defer cancelShort()
			wrong := cfg
			t.Setenv(config.SecretKafkaSASLPassword, "wrong")
			if err := wrong.Validate(); err != nil {
				t.Fatal(err)
			}
			if _, err := kafkalog.Partitions(short, wrong.Kafka(), topic); err == nil {
				t.Error("a wrong password was accepted")
			} else if strings.Contains(err.Error(), "wrong") {
				t.Errorf("the error shows the password: %v", err)
			}
			if _, err := kafkalog.Partitions(short, kafkalog.Plain(cfg.KafkaBrokers), topic); err == nil {
				t.Error("a plaintext client without SASL was accepted")
			}
		})
	}
}

// TestSecuritySettingsFailClearly: a mechanism without its user or
// password, an unknown mechanism, a missing CA file and half a client
// certificate are each refused with a message naming the setting.
func TestSecuritySettingsFailClearly(t *testing.T) {
	t.Setenv(config.SecretKafkaSASLPassword, "")
	for name, c := range map[string]struct {
		set  func(*config.Config)
		want string
	}{
		"no user":     {func(c *config.Config) { c.KafkaSASLMechanism = "PLAIN" }, "kafka-sasl-username"},
		"no password": {func(c *config.Config) { c.KafkaSASLMechanism, c.KafkaSASLUsername = "PLAIN", "u" }, config.SecretKafkaSASLPassword},
		"bad mechanism": {func(c *config.Config) {
			c.KafkaSASLMechanism, c.KafkaSASLUsername, c.KafkaSASLPasswordFile = "GSSAPI", "u", writeFile(t, "p")
		}, "SCRAM-SHA-512"},
		"no CA file":  {func(c *config.Config) { c.KafkaTLSCA = "/nonexistent/ca.pem" }, "kafka-tls"},
		"half a cert": {func(c *config.Config) { c.TemporalTLSCert = "/x/cert.pem" }, "both its cert and key"},
	} {
		cfg := config.Default()
		c.set(&cfg)
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error naming %s", name, err, c.want)
		}
	}
}

func writeFile(t *testing.T, content string) string {
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSnapshotKeys: the key file gives its keys in order, the newest
// first, skipping blank lines and comments; a short key, an empty file or
// a missing one is an error that does not show a key.
func TestSnapshotKeys(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	newer, older := strings.Repeat("b", 64), strings.Repeat("a", 32)
	keys, err := config.SnapshotKeys(write("keys", "# rotated in 2026-05\n"+newer+"\n\n  "+older+"  \n"))
	if err != nil || len(keys) != 2 || string(keys[0]) != newer || string(keys[1]) != older {
		t.Fatalf("keys %q, %v; want [%s %s]", keys, err, newer, older)
	}
	if keys, err := config.SnapshotKeys(""); err != nil || keys != nil {
		t.Errorf("no file: %q, %v; want none", keys, err)
	}
	short := "too-short-a-key"
	for name, path := range map[string]string{
		"a short key": write("short", newer+"\n"+short+"\n"),
		"no key":      write("empty", "# nothing yet\n"),
		"no file":     filepath.Join(dir, "missing"),
	} {
		_, err := config.SnapshotKeys(path)
		if err == nil || strings.Contains(err.Error(), short) || strings.Contains(err.Error(), newer) {
			t.Errorf("%s: err %v; want an error that names no key", name, err)
		}
	}
}
