// Command paystream-bigquery-emulator runs the pinned BigQuery emulator
// (github.com/goccy/bigquery-emulator) so that it keeps its data across
// restarts.
//
// The upstream command loads its --project on every start with
// server.Load(StructSource(project)), which rewrites the project's row with
// empty dataset and job lists: a restart on the same --database file forgets
// every dataset (a later create fails on a UNIQUE constraint) and every job
// ID, which paystream's load-job idempotency relies on. This wrapper makes
// the same server but only adds the project when it is missing.
//
// Its database runs in WAL mode (see run), and it runs every request to its
// end even when the client goes away.
// The emulator's database transactions follow the request's context; a
// client killed mid-request (the very fault paystream is tested against)
// cancelled one half-way and left the server answering every later request
// with "sql: connection is already closed".
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/goccy/bigquery-emulator/server"
)

func main() {
	project := flag.String("project", "", "project the emulator serves (required)")
	host := flag.String("host", "127.0.0.1", "address to listen on")
	port := flag.Int("port", 9050, "HTTP (REST API) port")
	grpcPort := flag.Int("grpc-port", 9060, "gRPC (Storage API) port")
	database := flag.String("database", "", "SQLite database file; in memory when empty")
	logLevel := flag.String("log-level", "error", "debug, info, warn or error")
	flag.Parse()
	if err := run(*project, *host, *port, *grpcPort, *database, *logLevel); err != nil {
		fmt.Fprintln(os.Stderr, "paystream-bigquery-emulator:", err)
		os.Exit(1)
	}
}

func run(project, host string, port, grpcPort int, database, logLevel string) error {
	if project == "" {
		return errors.New("--project is required")
	}
	storage := server.TempStorage
	if database != "" {
		// WAL with synchronous=NORMAL survives a killed process (what the
		// fault tests do) without an fsync per load job; only a machine
		// crash can lose the last commits, which a dev stack may.
		storage = server.Storage(fmt.Sprintf("file:%s?cache=shared&_journal_mode=WAL&_synchronous=NORMAL", database))
	}
	srv, err := server.New(storage)
	if err != nil {
		return err
	}
	if err := srv.SetProject(project); err != nil { // adds it only when missing
		return err
	}
	if err := srv.SetLogLevel(server.LogLevel(logLevel)); err != nil {
		return err
	}
	handler := srv.Handler
	srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handler.ServeHTTP(w, r.WithContext(context.WithoutCancel(r.Context())))
	})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		_ = srv.Stop(context.Background())
	}()
	httpAddr := net.JoinHostPort(host, strconv.Itoa(port))
	grpcAddr := net.JoinHostPort(host, strconv.Itoa(grpcPort))
	fmt.Printf("paystream-bigquery-emulator: project %s, REST on %s, gRPC on %s\n", project, httpAddr, grpcAddr)
	if err := srv.Serve(ctx, httpAddr, grpcAddr); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
