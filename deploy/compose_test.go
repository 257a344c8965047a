package deploy_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/paystream/paystream/internal/devstack"
	"sigs.k8s.io/yaml"
)

type composeFile struct {
	Name     string                    `json:"name"`
	Services map[string]composeService `json:"services"`
}

type composeService struct {
	Image       string                       `json:"image"`
	Build       any                          `json:"build"`
	Entrypoint  []string                     `json:"entrypoint"`
	Command     []string                     `json:"command"`
	Environment map[string]string            `json:"environment"`
	DependsOn   map[string]map[string]string `json:"depends_on"`
	Healthcheck map[string]any               `json:"healthcheck"`
	Ports       []string                     `json:"ports"`
	Platform    string                       `json:"platform"`
	Restart     string                       `json:"restart"`
	StopGrace   string                       `json:"stop_grace_period"`
}

// TestComposeWiring reads docker-compose.yml as compose does (with `docker
// compose config` too, where a Docker client has compose) and checks the
// wiring: every dependency exists and its condition can be met, every
// paystream container sets only variables its binary reads, the worker's
// health check and port match its HTTP address, and the starter waits for
// a healthy worker.
func TestComposeWiring(t *testing.T) {
	if out, err := exec.Command("docker", "compose", "version").CombinedOutput(); err == nil {
		if out, err := exec.Command("docker", "compose", "-f", "../docker-compose.yml", "config", "-q").CombinedOutput(); err != nil {
			t.Fatalf("docker compose config: %v\n%s", err, out)
		}
	} else {
		msg, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		t.Logf("no docker compose here (%s); checking with the Go parser only", msg)
	}
	f := readCompose(t)
	for _, want := range []string{"kafka", "temporal", "bigquery", "schema", "worker", "simulator", "starter"} {
		if _, ok := f.Services[want]; !ok {
			t.Errorf("no %s service", want)
		}
	}
	for name, s := range f.Services {
		for dep, cond := range s.DependsOn {
			target, ok := f.Services[dep]
			switch {
			case !ok:
				t.Errorf("%s depends on %s, which is not a service", name, dep)
			case cond["condition"] == "service_healthy" && target.Healthcheck == nil:
				t.Errorf("%s waits for %s to be healthy, which has no health check", name, dep)
			case cond["condition"] == "service_completed_successfully" && target.Restart != "no":
				t.Errorf("%s waits for %s to complete, which restarts", name, dep)
			case cond["condition"] == "":
				t.Errorf("%s depends on %s without a condition", name, dep)
			}
		}
		if s.Image != "paystream:local" {
			continue
		}
		binary, sub := commandOf(s.Entrypoint, s.Command)
		read := envNames(t, binary, sub...)
		for k := range s.Environment {
			if !read[k] {
				t.Errorf("%s sets %s, which %s %s does not read", name, k, binary, strings.Join(sub, " "))
			}
		}
	}
	w := f.Services["worker"]
	if w.Environment["PAYSTREAM_HTTP_ADDR"] != ":8080" || len(w.Ports) != 1 || !strings.HasSuffix(w.Ports[0], ":8080") {
		t.Errorf("worker serves on %q with ports %v", w.Environment["PAYSTREAM_HTTP_ADDR"], w.Ports)
	}
	if test, _ := w.Healthcheck["test"].([]any); len(test) < 3 || test[2] != "--check-ready" {
		t.Errorf("worker health check %v does not ask /readyz", w.Healthcheck["test"])
	}
	if f.Services["starter"].DependsOn["worker"]["condition"] != "service_healthy" {
		t.Error("the starter does not wait for a ready worker")
	}
	if f.Services["schema"].Build == nil {
		t.Error("nothing builds the paystream image")
	}
}

// readCompose decodes docker-compose.yml strictly.
func readCompose(t *testing.T) composeFile {
	t.Helper()
	raw, err := os.ReadFile("../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	// x- fields are compose's extensions (our shared environment):
	// resolved by the YAML anchors, then left out of the strict decode.
	var loose map[string]any
	if err := yaml.Unmarshal(raw, &loose); err != nil {
		t.Fatal(err)
	}
	for k := range loose {
		if strings.HasPrefix(k, "x-") {
			delete(loose, k)
		}
	}
	b, _ := yaml.Marshal(loose)
	var f composeFile
	if err := yaml.UnmarshalStrict(b, &f); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return f
}

// toolsDockerfile builds the servers devstack runs, as devstack builds them.
const toolsDockerfile = "tools/Dockerfile"

// TestComposeRunsTheDevstackServers holds compose's Temporal and BigQuery
// to the servers devstack runs: the upstream emulator reports a cut upload
// as a DONE job with part of its rows, which the patch in tools/ fixes, so
// compose must run an image built by devstack's own build step from the
// version tools/go.mod pins, and Temporal's dev server with the namespace,
// search attributes and settings devstack gives it, not the deprecated
// auto-setup image.
func TestComposeRunsTheDevstackServers(t *testing.T) {
	f := readCompose(t)
	for name, s := range f.Services {
		for _, unpatched := range []string{"goccy/bigquery-emulator", "temporalio/auto-setup"} {
			if strings.Contains(s.Image, unpatched) {
				t.Errorf("service %s runs %s", name, s.Image)
			}
		}
	}

	bq := f.Services["bigquery"]
	build, _ := bq.Build.(map[string]any)
	if build["context"] != "." || build["dockerfile"] != toolsDockerfile {
		t.Fatalf("the bigquery service is built with %v, want context . and dockerfile %s", bq.Build, toolsDockerfile)
	}
	if want := "/usr/local/bin/" + devstack.EmulatorBinary; len(bq.Entrypoint) != 1 || bq.Entrypoint[0] != want {
		t.Errorf("the bigquery service runs %v, want %s", bq.Entrypoint, want)
	}
	env := f.Services["schema"].Environment
	bqFlags := flagValues(bq.Command)
	if bqFlags["--project"] != env["PAYSTREAM_BIGQUERY_PROJECT"] || bqFlags["--host"] != "0.0.0.0" ||
		"http://bigquery:"+bqFlags["--port"] != env["PAYSTREAM_BIGQUERY_ENDPOINT"] {
		t.Errorf("the emulator runs with %v, the binaries are given %s and %s", bq.Command, env["PAYSTREAM_BIGQUERY_PROJECT"], env["PAYSTREAM_BIGQUERY_ENDPOINT"])
	}
	// In memory, a restarted emulator would forget the job IDs that make
	// a retried load job a no-op.
	if bqFlags["--database"] == "" {
		t.Errorf("the emulator keeps its data in memory: %v", bq.Command)
	}

	// The Dockerfile builds with devstack's build step, from the whole
	// tree (tools/go.mod's pin, the patch, devstack's code), never from a
	// bin/ the host built, and names no emulator version of its own.
	raw, err := os.ReadFile("../" + toolsDockerfile)
	if err != nil {
		t.Fatal(err)
	}
	df := string(raw)
	for _, want := range []string{"FROM golang:", "clang", "COPY . .", "go run ./devstack build-tools",
		"/src/bin/" + devstack.EmulatorBinary, "/src/bin/" + devstack.TemporalBinary} {
		if !strings.Contains(df, want) {
			t.Errorf("%s lacks %q", toolsDockerfile, want)
		}
	}
	if m := regexp.MustCompile(`(?i)bigquery-emulator[@: ]v?[0-9]|go-zetasql`).FindString(df); m != "" {
		t.Errorf("%s names the emulator's version itself (%q): tools/go.mod alone pins it", toolsDockerfile, m)
	}
	ignore, err := os.ReadFile("../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^/?bin/?$`).Match(ignore) || regexp.MustCompile(`(?m)^/?tools`).Match(ignore) {
		t.Errorf(".dockerignore must leave out bin/ and keep tools/:\n%s", ignore)
	}
	// The docs say which emulator compose runs: the one tools/go.mod pins.
	pinned := pinnedVersion(t, "github.com/goccy/bigquery-emulator")
	deployDoc, err := os.ReadFile("../docs/deploy.md")
	if err != nil {
		t.Fatal(err)
	}
	composeDoc, _, _ := strings.Cut(string(deployDoc), "\n## Kubernetes")
	if !strings.Contains(composeDoc, "bigquery-emulator "+pinned) {
		t.Errorf("docs/deploy.md's compose section does not name the pinned emulator, bigquery-emulator %s", pinned)
	}

	tp := f.Services["temporal"]
	if tp.Image != bq.Image || tp.Build != nil || tp.Platform != bq.Platform {
		t.Errorf("the temporal service runs image %q (build %v, platform %q), want the bigquery service's %q (%q)", tp.Image, tp.Build, tp.Platform, bq.Image, bq.Platform)
	}
	if want := "/usr/local/bin/" + devstack.TemporalBinary; len(tp.Entrypoint) != 1 || tp.Entrypoint[0] != want {
		t.Errorf("the temporal service runs %v, want %s", tp.Entrypoint, want)
	}
	if len(tp.Command) < 2 || tp.Command[0] != "server" || tp.Command[1] != "start-dev" {
		t.Fatalf("the temporal service runs %v, want server start-dev", tp.Command)
	}
	have := map[string]bool{}
	for i := 2; i+1 < len(tp.Command); i += 2 {
		have[tp.Command[i]+" "+tp.Command[i+1]] = true
	}
	want := devstack.TemporalServerFlags()
	for i := 0; i+1 < len(want); i += 2 {
		if !have[want[i]+" "+want[i+1]] {
			t.Errorf("temporal server start-dev lacks %s %s, which devstack gives it", want[i], want[i+1])
		}
	}
	tFlags := flagValues(tp.Command)
	if tFlags["--ip"] != "0.0.0.0" || "temporal:"+tFlags["--port"] != env["PAYSTREAM_TEMPORAL_ADDRESS"] || tFlags["--db-filename"] == "" {
		t.Errorf("temporal server start-dev %v: want --ip 0.0.0.0, --port as in %s, and a --db-filename", tp.Command[2:], env["PAYSTREAM_TEMPORAL_ADDRESS"])
	}
	if ui := tFlags["--ui-port"]; ui == "" || !slices.Contains(tp.Ports, ui+":"+ui) {
		t.Errorf("the web UI port %q is not published (%v)", ui, tp.Ports)
	}
	if tp.Healthcheck == nil || f.Services["worker"].DependsOn["temporal"]["condition"] != "service_healthy" {
		t.Error("the worker does not wait for a healthy Temporal")
	}
}

// flagValues reads --name=value and --name value pairs; a flag given
// twice keeps its last value.
func flagValues(args []string) map[string]string {
	v := map[string]string{}
	for i := 0; i < len(args); i++ {
		name, value, ok := strings.Cut(args[i], "=")
		if !ok && i+1 < len(args) && !strings.HasPrefix(args[i+1], "--") {
			i++
			value = args[i]
		}
		v[name] = value
	}
	return v
}

// pinnedVersion reads module's version from tools/go.mod, whose pins
// devstack builds.
func pinnedVersion(t *testing.T, module string) string {
	t.Helper()
	b, err := os.ReadFile("../tools/go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(module) + `\s+(v\S+)`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("tools/go.mod does not pin %s", module)
	}
	return string(m[1])
}

// TestDockerfile checks what the image promises: a static build, a
// non-root distroless runtime, and the worker's HTTP port.
func TestDockerfile(t *testing.T) {
	raw, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	s := string(raw)
	for _, want := range []string{"CGO_ENABLED=0", "./worker ./starter ./simulator", "FROM gcr.io/distroless/static-debian12:nonroot", "USER 65532:65532",
		"EXPOSE 8080", "ENV PAYSTREAM_HTTP_ADDR=:8080", `ENTRYPOINT ["/usr/local/bin/worker"]`} {
		if !strings.Contains(s, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	// The static build it runs must work here too, and stamp the version
	// and commit its build arguments give, as an image has no .git.
	m := regexp.MustCompile(`-ldflags="([^"]*)"`).FindStringSubmatch(s)
	if m == nil {
		t.Fatal("the Dockerfile's go build passes no -ldflags")
	}
	const version, commit = "v9.9.9-test", "0123456789abcdef0123"
	ldflags := strings.NewReplacer("${VERSION}", version, "${COMMIT}", commit).Replace(m[1])
	out := t.TempDir()
	build := exec.Command("go", "build", "-trimpath", "-ldflags", ldflags, "-o", out+"/", "../worker", "../starter", "../simulator")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	for _, bin := range []string{"worker", "starter", "simulator"} {
		b, err := exec.Command(filepath.Join(out, bin), "--version").CombinedOutput()
		if want := bin + " " + version + " " + commit[:12] + " "; err != nil || !strings.HasPrefix(string(b), want) {
			t.Errorf("%s --version: %q (%v), want it to start %q", bin, b, err, want)
		}
	}
}
