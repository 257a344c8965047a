package e2e

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paystream/paystream/internal/config"
	"github.com/paystream/paystream/internal/devstack/devstacktest"
	"github.com/paystream/paystream/internal/operator"
	"github.com/paystream/paystream/internal/pipeline"
	"github.com/paystream/paystream/internal/warehouse"
)

// temporalFront stands where a Temporal Cloud namespace endpoint or a
// TLS-terminating ingress would: it speaks TLS, demands what its
// configuration demands (a client certificate, an API key), and forwards
// the gRPC calls it lets through to the dev server, which has no TLS.
type temporalFront struct {
	addr            string
	passed, refused atomic.Int64
}

func startTemporalFront(t *testing.T, backend string, serverTLS *tls.Config, apiKey string) *temporalFront {
	t.Helper()
	f := &temporalFront{}
	h2c := &http.Transport{Protocols: new(http.Protocols)}
	h2c.Protocols.SetUnencryptedHTTP2(true)
	proxy := &httputil.ReverseProxy{
		Rewrite:       func(r *httputil.ProxyRequest) { r.SetURL(&url.URL{Scheme: "http", Host: backend}) },
		Transport:     h2c,
		FlushInterval: -1,
		ErrorLog:      log.New(io.Discard, "", 0), // calls cut off as the test ends
		// A gRPC error answered trailers-only (a workflow not found) would
		// reach the client as headers and an ended stream with no
		// trailers; the status goes in the trailers, as a proxy sends it.
		ModifyResponse: func(resp *http.Response) error {
			if resp.Header.Get("Grpc-Status") == "" {
				return nil
			}
			resp.Trailer = http.Header{}
			for _, k := range []string{"Grpc-Status", "Grpc-Message", "Grpc-Status-Details-Bin"} {
				if v := resp.Header.Values(k); len(v) > 0 {
					resp.Trailer[k] = v
					resp.Header.Del(k)
				}
			}
			return nil
		},
	}
	srv := &http.Server{TLSConfig: serverTLS, ErrorLog: log.New(io.Discard, "", 0), Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if apiKey != "" && r.Header.Get("Authorization") != "Bearer "+apiKey {
			f.refused.Add(1)
			// gRPC's trailers-only answer: UNAUTHENTICATED.
			w.Header().Set("Content-Type", "application/grpc")
			w.Header().Set("Grpc-Status", "16")
			w.Header().Set("Grpc-Message", "invalid API key")
			w.WriteHeader(http.StatusOK)
			return
		}
		f.passed.Add(1)
		proxy.ServeHTTP(w, r)
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		if err := srv.ServeTLS(ln, "", ""); !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Temporal TLS front: %v", err)
		}
	}()
	t.Cleanup(func() { srv.Close() })
	f.addr = ln.Addr().String()
	return f
}

// TestTemporalOverMutualTLSAndAPIKey runs the pipeline with its worker
// reaching Temporal over mutual TLS and its operator with an API key over
// TLS (Temporal Cloud's two ways in), configured as an operator would:
// certificate files by flag, the key from the environment. A client
// without its certificate and one with a wrong key are refused, and the
// refusal does not show the key.
func TestTemporalOverMutualTLSAndAPIKey(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	stack := Start(t, Options{Partitions: 2, NoWorker: true})
	base := stack.ClientConfig()
	certs := devstacktest.NewCerts(t)
	mutual := certs.Server.Clone()
	mutual.ClientAuth, mutual.ClientCAs = tls.RequireAndVerifyClientCert, certs.CA
	mtlsFront := startTemporalFront(t, base.TemporalAddress, mutual, "")
	const apiKey = "paystream-test-key-7f3a"
	keyFront := startTemporalFront(t, base.TemporalAddress, certs.Server.Clone(), apiKey)

	workerCfg := base
	workerCfg.TemporalAddress = mtlsFront.addr
	workerCfg.TemporalTLSCA, workerCfg.TemporalTLSCert, workerCfg.TemporalTLSKey = certs.CAFile, certs.ClientCertFile, certs.ClientKeyFile
	// The worker gzips its requests, as to Temporal Cloud over the
	// internet; the operator below sends them as they are, the default.
	workerCfg.TemporalCompression = config.CompressionGzip
	if err := workerCfg.Validate(); err != nil {
		t.Fatal(err)
	}
	wc, err := pipeline.DialTemporal(ctx, workerCfg, nil)
	if err != nil {
		t.Fatalf("dial Temporal over mutual TLS: %v", err)
	}
	defer wc.Close()
	w, err := pipeline.NewWorker(ctx, workerCfg, wc, pipeline.WorkerOptions{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	t.Setenv(config.SecretTemporalAPIKey, apiKey)
	opCfg := base
	opCfg.TemporalAddress, opCfg.TemporalTLSCA = keyFront.addr, certs.CAFile
	if err := opCfg.Validate(); err != nil {
		t.Fatal(err)
	}
	oc, err := pipeline.DialTemporal(ctx, opCfg, nil)
	if err != nil {
		t.Fatalf("dial Temporal with an API key: %v", err)
	}
	defer oc.Close()
	bq, err := warehouse.Open(ctx, base.BigQueryProject, base.BigQueryEndpoint)
	if err != nil {
		t.Fatal(err)
	}
	defer bq.Close()
	tuning := operator.DefaultTuning()
	tuning.MaxRecords, tuning.PollFor = 500, time.Second
	// The fixture's stack, with this worker and an operator over TLS.
	e := &Stack{Stack: stack.Stack, Worker: w, Operator: &operator.Operator{Config: opCfg, Temporal: oc, BigQuery: bq, Tuning: tuning}}
	m := produceAndStart(t, e, 2000)
	e.WaitCaughtUp(t, 3*time.Minute)
	e.Reconcile(t, &m)
	if mtlsFront.passed.Load() == 0 || keyFront.passed.Load() == 0 {
		t.Fatalf("calls through the mutual-TLS front %d, through the API-key front %d: one side bypassed its front", mtlsFront.passed.Load(), keyFront.passed.Load())
	}

	// Refused: no client certificate; a wrong API key.
	short := func() context.Context {
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		t.Cleanup(cancel)
		return c
	}
	noCert := workerCfg
	noCert.TemporalTLSCert, noCert.TemporalTLSKey = "", ""
	if err := noCert.Validate(); err != nil {
		t.Fatal(err)
	}
	if c, err := pipeline.DialTemporal(short(), noCert, nil); err == nil {
		c.Close()
		t.Error("a client without its certificate was let in")
	}
	t.Setenv(config.SecretTemporalAPIKey, "wrong-key-91c2")
	wrongKey := opCfg
	if err := wrongKey.Validate(); err != nil {
		t.Fatal(err)
	}
	refusedBefore := keyFront.refused.Load()
	c, err := pipeline.DialTemporal(short(), wrongKey, nil)
	if err == nil {
		c.Close()
		t.Fatal("a wrong API key was let in")
	}
	if strings.Contains(err.Error(), "wrong-key-91c2") {
		t.Errorf("the error shows the key: %v", err)
	}
	if keyFront.refused.Load() == refusedBefore {
		t.Errorf("the wrong key was refused before it reached the front: %v", err)
	}
	t.Logf("refused as it should be: %v", err)
}
