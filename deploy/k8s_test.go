package deploy_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/paystream/paystream/internal/pipeline"
)

// kustomization is the part of Kustomize's file these manifests use;
// decoding strictly into it catches a misspelt field.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Namespace  string   `json:"namespace"`
	Resources  []string `json:"resources"`
	Patches    []struct {
		Path   string `json:"path"`
		Target *struct {
			Kind string `json:"kind"`
			Name string `json:"name"`
		} `json:"target"`
	} `json:"patches"`
	Components   []string `json:"components"`
	Replacements []any    `json:"replacements"`
	Labels       []struct {
		Pairs            map[string]string `json:"pairs"`
		IncludeSelectors bool              `json:"includeSelectors"`
	} `json:"labels"`
	Images []struct {
		Name    string `json:"name"`
		NewName string `json:"newName"`
		NewTag  string `json:"newTag"`
	} `json:"images"`
}

// objects are the decoded manifests of one directory, by kind and name.
type objects struct {
	deployments map[string]*appsv1.Deployment
	jobs        map[string]*batchv1.Job
	configMaps  map[string]*corev1.ConfigMap
	services    map[string]*corev1.Service
	pdbs        map[string]*policyv1.PodDisruptionBudget
	hpas        map[string]*autoscalingv2.HorizontalPodAutoscaler
	accounts    map[string]*corev1.ServiceAccount
	policies    map[string]*networkingv1.NetworkPolicy
	claims      map[string]*corev1.PersistentVolumeClaim
	namespaces  map[string]*corev1.Namespace
	patched     map[string]bool // "Kind name" of the objects patch files change
}

// decodeDir decodes a kustomization directory strictly: its
// kustomization.yaml into the struct above, every resource and patch it
// names into the official Kubernetes type of its kind, rejecting any
// field the type lacks.
func decodeDir(t *testing.T, dir string) (kustomization, objects) {
	t.Helper()
	var k kustomization
	strict(t, filepath.Join(dir, "kustomization.yaml"), &k)
	if k.Kind != "Kustomization" || k.APIVersion != "kustomize.config.k8s.io/v1beta1" {
		t.Errorf("%s: kind %q, apiVersion %q", dir, k.Kind, k.APIVersion)
	}
	o := objects{map[string]*appsv1.Deployment{}, map[string]*batchv1.Job{}, map[string]*corev1.ConfigMap{}, map[string]*corev1.Service{},
		map[string]*policyv1.PodDisruptionBudget{}, map[string]*autoscalingv2.HorizontalPodAutoscaler{}, map[string]*corev1.ServiceAccount{},
		map[string]*networkingv1.NetworkPolicy{}, map[string]*corev1.PersistentVolumeClaim{}, map[string]*corev1.Namespace{}, map[string]bool{}}
	files := k.Resources
	patches := map[string]bool{}
	for _, p := range k.Patches {
		if p.Target != nil {
			// A JSON patch (RFC 6902) of the target; TestKubernetesFirstApply
			// builds the overlays that apply it.
			var ops []struct {
				Op    string `json:"op"`
				Path  string `json:"path"`
				Value any    `json:"value"`
			}
			strict(t, filepath.Join(dir, p.Path), &ops)
			if len(ops) == 0 {
				t.Errorf("%s: patch %s has no operation", dir, p.Path)
			}
			continue
		}
		files = append(files, p.Path)
		patches[p.Path] = true
	}
	for _, f := range files {
		path := filepath.Join(dir, f)
		if st, err := os.Stat(path); err != nil {
			t.Errorf("%s names %s: %v", dir, f, err)
			continue
		} else if st.IsDir() {
			continue // a base, decoded on its own
		}
		file, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, raw := range bytes.Split(file, []byte("\n---\n")) {
			kind, name := decodeObject(t, o, path, raw)
			if patches[f] {
				o.patched[kind+" "+name] = true
			}
		}
	}
	return k, o
}

// decodeObject decodes one manifest of path into o by its kind.
func decodeObject(t *testing.T, o objects, path string, raw []byte) (kind, name string) {
	t.Helper()
	var head struct {
		Kind     string `json:"kind"`
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	if err := yaml.Unmarshal(raw, &head); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	name = head.Metadata.Name
	switch head.Kind {
	case "Deployment":
		o.deployments[name] = decode[appsv1.Deployment](t, path, raw)
	case "Job":
		o.jobs[name] = decode[batchv1.Job](t, path, raw)
	case "ConfigMap":
		o.configMaps[name] = decode[corev1.ConfigMap](t, path, raw)
	case "Service":
		o.services[name] = decode[corev1.Service](t, path, raw)
	case "PodDisruptionBudget":
		o.pdbs[name] = decode[policyv1.PodDisruptionBudget](t, path, raw)
	case "HorizontalPodAutoscaler":
		o.hpas[name] = decode[autoscalingv2.HorizontalPodAutoscaler](t, path, raw)
	case "ServiceAccount":
		o.accounts[name] = decode[corev1.ServiceAccount](t, path, raw)
	case "NetworkPolicy":
		o.policies[name] = decode[networkingv1.NetworkPolicy](t, path, raw)
	case "PersistentVolumeClaim":
		o.claims[name] = decode[corev1.PersistentVolumeClaim](t, path, raw)
	case "Namespace":
		o.namespaces[name] = decode[corev1.Namespace](t, path, raw)
	default:
		t.Errorf("%s: kind %q has no check here", path, head.Kind)
	}
	return head.Kind, name
}

// decode decodes one manifest strictly; a strategic-merge delete patch's
// "$patch" directive is Kustomize's, not the type's.
func decode[T any](t *testing.T, path string, raw []byte) *T {
	t.Helper()
	js, err := yaml.YAMLToJSON(raw)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	js = bytes.Replace(js, []byte(`"$patch":"delete",`), nil, 1)
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	v := new(T)
	if err := dec.Decode(v); err != nil {
		t.Errorf("%s: %v", path, err)
	}
	return v
}

func strict(t *testing.T, path string, v any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(raw, v); err != nil {
		t.Errorf("%s: %v", path, err)
	}
}

// TestKubernetesManifests decodes the base and both overlays strictly and
// checks the wiring: probe paths and ports the worker serves, variables
// the binaries read, a grace period above the worker's stop timeout, a
// locked-down security context, and a PDB, HPA and Service that select
// the worker.
func TestKubernetesManifests(t *testing.T) {
	_, base := decodeDir(t, "k8s/base")
	worker := base.deployments["paystream-worker"]
	if worker == nil {
		t.Fatal("no paystream-worker Deployment")
	}
	config := base.configMaps["paystream-config"]
	if config == nil {
		t.Fatal("no paystream-config ConfigMap")
	}
	spec := worker.Spec.Template.Spec
	c := spec.Containers[0]
	if len(c.Ports) != 1 || c.Ports[0].Name != "http" || c.Ports[0].ContainerPort != 8080 {
		t.Errorf("worker ports %+v, want http 8080", c.Ports)
	}
	for probe, want := range map[*corev1.Probe]string{c.LivenessProbe: pipeline.HealthzPath, c.ReadinessProbe: pipeline.ReadyzPath} {
		if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Path != want || probe.HTTPGet.Port.String() != "http" {
			t.Errorf("probe %+v, want GET %s on port http", probe, want)
		}
	}
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	if env["PAYSTREAM_HTTP_ADDR"] != ":8080" {
		t.Errorf("worker PAYSTREAM_HTTP_ADDR = %q, want :8080", env["PAYSTREAM_HTTP_ADDR"])
	}
	stop, err := time.ParseDuration(env["PAYSTREAM_STOP_TIMEOUT"])
	if err != nil || spec.TerminationGracePeriodSeconds == nil || time.Duration(*spec.TerminationGracePeriodSeconds)*time.Second <= stop {
		t.Errorf("grace period %v s must exceed the stop timeout %q", spec.TerminationGracePeriodSeconds, env["PAYSTREAM_STOP_TIMEOUT"])
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("worker resources %+v: want CPU requests and a memory limit", c.Resources)
	}
	// The GC must know the container's limit, or a full dedup window's
	// GC headroom alone can pass it.
	memFromLimit := false
	for _, e := range c.Env {
		if e.Name == "PAYSTREAM_MEMORY_LIMIT" && e.ValueFrom != nil && e.ValueFrom.ResourceFieldRef != nil {
			memFromLimit = e.ValueFrom.ResourceFieldRef.Resource == "limits.memory"
		}
	}
	if !memFromLimit {
		t.Error("worker PAYSTREAM_MEMORY_LIMIT does not come from its limits.memory")
	}
	// The snapshot directory must be writable under a read-only root.
	mounted := false
	for _, m := range c.VolumeMounts {
		for _, v := range spec.Volumes {
			mounted = mounted || (m.Name == v.Name && v.EmptyDir != nil && m.MountPath == env["PAYSTREAM_SNAPSHOT_DIR"] && !m.ReadOnly)
		}
	}
	if !mounted {
		t.Errorf("worker PAYSTREAM_SNAPSHOT_DIR %q is not a writable emptyDir mount", env["PAYSTREAM_SNAPSHOT_DIR"])
	}

	// Containers set only what their binaries read.
	checkContainers := func(what string, pod corev1.PodSpec, configs map[string]*corev1.ConfigMap) {
		for _, c := range pod.Containers {
			binary, sub := commandOf(c.Command, c.Args)
			read := envNames(t, binary, sub...)
			for _, e := range c.Env {
				if !read[e.Name] && !goRuntimeEnv[e.Name] {
					t.Errorf("%s sets %s, which %s %s does not read", what, e.Name, binary, strings.Join(sub, " "))
				}
			}
			for _, from := range c.EnvFrom {
				cm := configs[from.ConfigMapRef.Name]
				if cm == nil {
					t.Errorf("%s takes its environment from ConfigMap %s, which is not here", what, from.ConfigMapRef.Name)
					continue
				}
				for k := range cm.Data {
					if !read[k] {
						t.Errorf("%s gets %s from %s, which %s %s does not read", what, k, cm.Name, binary, strings.Join(sub, " "))
					}
				}
			}
			sc := c.SecurityContext
			if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				t.Errorf("%s: container security context %+v: want a read-only root and no privilege escalation", what, sc)
			}
		}
		if pod.SecurityContext == nil || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot {
			t.Errorf("%s does not run as non-root", what)
		}
		if pod.ServiceAccountName != "paystream" {
			t.Errorf("%s runs as service account %q", what, pod.ServiceAccountName)
		}
	}
	for name, d := range base.deployments {
		checkContainers("Deployment "+name, d.Spec.Template.Spec, base.configMaps)
	}
	for name, j := range base.jobs {
		checkContainers("Job "+name, j.Spec.Template.Spec, base.configMaps)
	}
	if base.jobs["paystream-starter"] == nil || base.deployments["paystream-simulator"] == nil {
		t.Error("the base lacks the starter Job or the simulator Deployment")
	}

	podLabels := labels.Set(worker.Spec.Template.Labels)
	if pdb := base.pdbs["paystream-worker"]; pdb == nil || !selects(t, pdb.Spec.Selector.MatchLabels, podLabels) || pdb.Spec.MinAvailable == nil {
		t.Error("the PodDisruptionBudget does not keep a worker available")
	}
	if hpa := base.hpas["paystream-worker"]; hpa == nil || hpa.Spec.ScaleTargetRef.Kind != "Deployment" || hpa.Spec.ScaleTargetRef.Name != worker.Name ||
		hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas < 2 {
		t.Error("the HorizontalPodAutoscaler does not scale the worker from 2")
	}
	if svc := base.services["paystream-worker"]; svc == nil || !selects(t, svc.Spec.Selector, podLabels) || svc.Spec.Ports[0].TargetPort.String() != "http" {
		t.Error("the Service does not reach the workers' http port")
	}

	checkPool(t, base, worker)

	// Overlays: what they patch exists in the base and decodes; prod's
	// configuration is read by the binaries too; the autoscaler alone
	// sets the worker count.
	for _, overlay := range []string{"dev", "prod"} {
		k, o := decodeDir(t, "k8s/overlays/"+overlay)
		for name, d := range o.deployments {
			if o.patched["Deployment "+name] && d.Spec.Replicas != nil {
				t.Errorf("overlay %s sets replicas of %s, which its autoscaler then fights", overlay, name)
			}
		}
		for name, h := range o.hpas {
			if base.hpas[name] == nil || h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 1 || h.Spec.MaxReplicas < *h.Spec.MinReplicas {
				t.Errorf("overlay %s: autoscaler %s %+v: want a base autoscaler and 1 <= min <= max", overlay, name, h.Spec)
			}
		}
		if k.Namespace == "" || !slices.Contains(k.Resources, "../../base") {
			t.Errorf("overlay %s: namespace %q, resources %v", overlay, k.Namespace, k.Resources)
		}
		if overlay == "prod" {
			checkSharedSnapshots(t, o)
		}
		for name := range o.deployments {
			if o.patched["Deployment "+name] && base.deployments[name] == nil {
				t.Errorf("overlay %s patches Deployment %s, which the base lacks", overlay, name)
			}
		}
		// paystream-config is every binary's; paystream-start holds the
		// partition settings, which starter start alone reads.
		readers := map[string][]string{"paystream-config": {"worker"}, "paystream-start": {"starter", "start"}}
		for name, cm := range o.configMaps {
			reader := readers[name]
			if reader == nil {
				t.Errorf("overlay %s patches ConfigMap %s, which no binary reads", overlay, name)
				continue
			}
			read := envNames(t, reader[0], reader[1:]...)
			for key := range cm.Data {
				if !read[key] {
					t.Errorf("overlay %s sets %s in %s, which %s does not read", overlay, key, name, strings.Join(reader, " "))
				}
			}
		}
	}
}

func selects(t *testing.T, selector map[string]string, pod labels.Set) bool {
	t.Helper()
	return len(selector) > 0 && labels.SelectorFromSet(selector).Matches(pod)
}

// goRuntimeEnv are variables the Go runtime reads, not the binaries' flags.
var goRuntimeEnv = map[string]bool{"GOMEMLIMIT": true, "GOGC": true}

// checkPool checks what a pool of workers needs on a cluster: the
// autoscaler alone sets the count, workers spread over nodes and zones,
// no API token, only the http port open, a budget that lets an unhealthy
// worker go, and the memory limit from the container's, which the worker
// shares out itself: a GOMEMLIMIT would override its GC limit.
func checkPool(t *testing.T, base objects, worker *appsv1.Deployment) {
	t.Helper()
	if worker.Spec.Replicas != nil {
		t.Errorf("the worker Deployment sets replicas (%d): its autoscaler owns the count", *worker.Spec.Replicas)
	}
	spec := worker.Spec.Template.Spec
	podLabels := labels.Set(worker.Spec.Template.Labels)
	keys := map[string]bool{}
	for _, c := range spec.TopologySpreadConstraints {
		if c.LabelSelector != nil && selects(t, c.LabelSelector.MatchLabels, podLabels) && c.MaxSkew == 1 {
			keys[c.TopologyKey] = true
		}
	}
	if !keys["kubernetes.io/hostname"] || !keys["topology.kubernetes.io/zone"] {
		t.Errorf("worker topology spread %+v: want workers spread over nodes and zones", spec.TopologySpreadConstraints)
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Error("worker pods mount a service account token; they call no Kubernetes API")
	}
	if sa := base.accounts["paystream"]; sa == nil || sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
		t.Error("the paystream ServiceAccount mounts its token by default")
	}
	np := base.policies["paystream-worker"]
	if np == nil || !selects(t, np.Spec.PodSelector.MatchLabels, podLabels) || len(np.Spec.Ingress) != 1 {
		t.Fatal("no NetworkPolicy selects the workers with one ingress rule")
	}
	var open []string
	for _, p := range np.Spec.Ingress[0].Ports {
		open = append(open, p.Port.String())
	}
	if port := spec.Containers[0].Ports[0].ContainerPort; len(open) != 1 || open[0] != fmt.Sprint(port) {
		t.Errorf("the NetworkPolicy opens ports %v, want only the worker's %d", open, port)
	}
	if pdb := base.pdbs["paystream-worker"]; pdb == nil || pdb.Spec.UnhealthyPodEvictionPolicy == nil ||
		*pdb.Spec.UnhealthyPodEvictionPolicy != policyv1.AlwaysAllow {
		t.Error("the PodDisruptionBudget keeps unhealthy workers from eviction (want unhealthyPodEvictionPolicy: AlwaysAllow)")
	}
	limit := false
	for _, e := range spec.Containers[0].Env {
		limit = limit || e.Name == "PAYSTREAM_MEMORY_LIMIT" && e.ValueFrom != nil && e.ValueFrom.ResourceFieldRef != nil && e.ValueFrom.ResourceFieldRef.Resource == "limits.memory"
		if e.Name == "GOMEMLIMIT" {
			t.Error("the worker sets GOMEMLIMIT: the runtime's value wins over the GC limit the worker sets (90 % of the container's, less the dedup tables)")
		}
	}
	if !limit {
		t.Error("worker PAYSTREAM_MEMORY_LIMIT does not come from its limits.memory")
	}
}

// checkSharedSnapshots checks that production workers keep their dedup
// window snapshots on one volume they all mount, so a partition the pool
// moves loads its window on the new worker instead of replaying the log.
func checkSharedSnapshots(t *testing.T, o objects) {
	t.Helper()
	w := o.deployments["paystream-worker"]
	if w == nil {
		t.Fatal("prod does not patch the worker's snapshot volume")
	}
	var claim string
	for _, v := range w.Spec.Template.Spec.Volumes {
		if v.Name == "snapshots" && v.EmptyDir == nil && v.PersistentVolumeClaim != nil {
			claim = v.PersistentVolumeClaim.ClaimName
		}
	}
	pvc := o.claims[claim]
	if pvc == nil {
		t.Fatalf("prod's worker snapshot volume is not a claim the overlay defines (claim %q)", claim)
	}
	rwx := false
	for _, m := range pvc.Spec.AccessModes {
		rwx = rwx || m == corev1.ReadWriteMany
	}
	if !rwx || pvc.Spec.StorageClassName == nil || *pvc.Spec.StorageClassName == "" {
		t.Errorf("claim %s: access modes %v, class %v: want ReadWriteMany on a named class", claim, pvc.Spec.AccessModes, pvc.Spec.StorageClassName)
	}
	checkSnapshotKeys(t, w)
}

// checkSnapshotKeys checks that workers sharing a snapshot volume sign
// their snapshots: the worker reads PAYSTREAM_SNAPSHOT_KEY_FILE, and it
// names a file of a Secret volume the worker mounts read-only, which is
// not optional (a worker without its keys does not start).
func checkSnapshotKeys(t *testing.T, w *appsv1.Deployment) {
	t.Helper()
	const env = "PAYSTREAM_SNAPSHOT_KEY_FILE"
	if !envNames(t, "worker")[env] {
		t.Fatalf("the worker does not read %s", env)
	}
	var c *corev1.Container
	for i := range w.Spec.Template.Spec.Containers {
		if w.Spec.Template.Spec.Containers[i].Name == "worker" {
			c = &w.Spec.Template.Spec.Containers[i]
		}
	}
	if c == nil {
		t.Fatal("prod does not patch the worker container")
	}
	file := ""
	for _, e := range c.Env {
		if e.Name == env {
			file = e.Value
		}
	}
	if file == "" {
		t.Fatalf("prod's workers share a snapshot volume without %s: anything that can write it can change their decisions", env)
	}
	secrets := map[string]*corev1.SecretVolumeSource{}
	for _, v := range w.Spec.Template.Spec.Volumes {
		if v.Secret != nil {
			secrets[v.Name] = v.Secret
		}
	}
	for _, m := range c.VolumeMounts {
		s := secrets[m.Name]
		rel, under := strings.CutPrefix(file, strings.TrimSuffix(m.MountPath, "/")+"/")
		if s == nil || !under {
			continue
		}
		if !m.ReadOnly || s.SecretName != "paystream-secrets" || (s.Optional != nil && *s.Optional) {
			t.Errorf("%s %s: mount %+v of Secret %+v: want paystream-secrets, read-only, not optional", env, file, m, s)
		}
		for _, item := range s.Items {
			if item.Path == rel {
				return
			}
		}
		t.Errorf("%s %s: Secret volume %s has no item at %s (items %+v)", env, file, m.Name, rel, s.Items)
		return
	}
	t.Errorf("%s %s is not in a Secret volume the worker mounts", env, file)
}
