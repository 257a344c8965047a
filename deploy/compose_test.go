package deploy_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

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
	for _, want := range []string{"kafka", "postgres", "temporal", "temporal-ui", "bigquery", "worker", "simulator", "starter"} {
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
