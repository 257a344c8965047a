package kafkalog

import (
	"crypto/tls"
	"fmt"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
)

// Cluster is how to reach a Kafka cluster: its bootstrap brokers and,
// for a secured one, TLS and a SASL mechanism (PLAIN or SCRAM). Every
// connection paystream makes goes through it.
type Cluster struct {
	Brokers []string
	TLS     *tls.Config // nil: plaintext
	SASL    *SASL       // nil: no authentication
}

// SASL is a SASL mechanism with its credentials, which it never prints.
type SASL struct {
	name      string
	mechanism sasl.Mechanism
}

// NewSASL returns mechanism (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, in
// any case) for user and password.
func NewSASL(mechanism, user, password string) (*SASL, error) {
	name := strings.ToUpper(mechanism)
	var m sasl.Mechanism
	var err error
	switch name {
	case "PLAIN":
		m = plain.Mechanism{Username: user, Password: password}
	case "SCRAM-SHA-256":
		m, err = scram.Mechanism(scram.SHA256, user, password)
	case "SCRAM-SHA-512":
		m, err = scram.Mechanism(scram.SHA512, user, password)
	default:
		return nil, fmt.Errorf("SASL mechanism must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, got %q", mechanism)
	}
	if err != nil {
		return nil, fmt.Errorf("SASL mechanism %s: %w", name, err)
	}
	return &SASL{name: name, mechanism: m}, nil
}

// String is the mechanism's name.
func (s *SASL) String() string { return s.name }

// Plain is a cluster without TLS or SASL, such as the devstack's.
func Plain(brokers []string) Cluster { return Cluster{Brokers: brokers} }

// String names the brokers and the security, never a credential: a
// Cluster may be logged.
func (c Cluster) String() string {
	sec := "plaintext"
	if c.TLS != nil {
		sec = "tls"
	}
	if c.SASL != nil {
		sec += "+sasl/" + c.SASL.name
	}
	return fmt.Sprintf("%s (%s)", strings.Join(c.Brokers, ","), sec)
}

// transport carries a Client's or Producer's requests. It dials any of
// the bootstrap brokers that answers, sends each request to the
// partition's leader as the cluster's metadata names it, and keeps its
// connections, and a goroutine that refreshes that metadata every
// metadataTTL, until CloseIdleConnections: a kafka.Writer closes only a
// transport it made itself, so whoever makes one closes it.
func (c Cluster) transport() *kafka.Transport {
	t := &kafka.Transport{TLS: c.TLS, DialTimeout: 10 * time.Second, MetadataTTL: metadataTTL}
	if c.SASL != nil {
		t.SASL = c.SASL.mechanism
	}
	return t
}

// metadataTTL bounds how long a leader change or a dead broker goes
// unnoticed: requests to the old leader fail and are retried until then.
const metadataTTL = 2 * time.Second

// Client answers metadata, offset and commit requests. Keep one for as long
// as it is used and Close it: each holds a Transport, with its connections
// and goroutines.
type Client struct {
	kc        *kafka.Client
	transport *kafka.Transport
	cluster   Cluster
}

// Client returns a Client whose requests time out after timeout.
func (c Cluster) Client(timeout time.Duration) *Client {
	t := c.transport()
	return &Client{kc: &kafka.Client{Addr: kafka.TCP(c.Brokers...), Timeout: timeout, Transport: t}, transport: t, cluster: c}
}

// Close closes the client's connections and stops its metadata refresh.
func (c *Client) Close() { c.transport.CloseIdleConnections() }
