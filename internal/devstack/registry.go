package devstack

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"
)

// schemaRegistry is the stack's Confluent-compatible Schema Registry:
// franz-go's in-memory srfake served on a port of its own, its schemas
// kept in the state directory after every change, so that a restarted
// stack still knows the IDs its topic's records name (a registry that
// forgot them would turn them into schema_unknown_id).
type schemaRegistry struct {
	reg  *srfake.Registry
	file string
	mu   sync.Mutex // one save at a time
	srv  *http.Server
}

func newSchemaRegistry(stateDir string) (*schemaRegistry, error) {
	r := &schemaRegistry{reg: srfake.NewRegistry(), file: filepath.Join(stateDir, "schema-registry.json")}
	b, err := os.ReadFile(r.file)
	if errors.Is(err, os.ErrNotExist) {
		return r, nil
	}
	if err != nil {
		return nil, err
	}
	var saved []sr.SubjectSchema
	if err := json.Unmarshal(b, &saved); err != nil {
		return nil, fmt.Errorf("%s: %w", r.file, err)
	}
	slices.SortFunc(saved, func(a, b sr.SubjectSchema) int { return a.ID - b.ID })
	seeded := map[int]bool{}
	for _, s := range saved {
		if seeded[s.ID] {
			// One schema under a second subject: registering it again
			// finds its ID.
			if _, _, err := r.reg.RegisterSchema(s.Subject, s.Schema); err != nil {
				return nil, fmt.Errorf("%s: %s version %d: %w", r.file, s.Subject, s.Version, err)
			}
			continue
		}
		r.reg.SeedSchema(s.Subject, s.Version, s.ID, s.Schema)
		seeded[s.ID] = true
	}
	return r, nil
}

// serve listens on addr; a change of the registry's schemas is saved
// before its answer goes out.
func (r *schemaRegistry) serve(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("start schema registry on %s: %w", addr, err)
	}
	h := r.reg.Handler()
	r.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method == http.MethodGet {
			h.ServeHTTP(w, req)
			return
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code < 300 {
			if err := r.save(); err != nil {
				http.Error(w, `{"error_code":50001,"message":"devstack: save schemas: `+strconv.Quote(err.Error())+`"}`, http.StatusInternalServerError)
				return
			}
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	})}
	go func() { _ = r.srv.Serve(ln) }()
	return nil
}

func (r *schemaRegistry) stop() {
	if r.srv != nil {
		_ = r.srv.Close()
		r.srv = nil
	}
}

// save writes every subject's versions, soft-deleted ones too.
func (r *schemaRegistry) save() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec := httptest.NewRecorder()
	r.reg.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/schemas?deleted=true", nil))
	if rec.Code != http.StatusOK {
		return fmt.Errorf("list schemas: %d", rec.Code)
	}
	tmp := r.file + ".tmp"
	if err := os.WriteFile(tmp, rec.Body.Bytes(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, r.file)
}
