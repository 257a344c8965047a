package deploy_test

import (
	"bufio"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/paystream/paystream/internal/devstack"
	"github.com/paystream/paystream/internal/pipeline"
	"github.com/paystream/paystream/internal/searchattr"
)

// object is one resource of a kustomize build.
type object struct {
	kind, name, namespace string
	yaml                  []byte
}

// kustomize runs kustomize, as `kubectl apply -k` does, on dir of fsys.
func kustomize(t *testing.T, fsys filesys.FileSystem, dir string) []object {
	t.Helper()
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(fsys, dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	var objs []object
	for _, r := range m.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, object{r.GetKind(), r.GetName(), r.GetNamespace(), y})
	}
	return objs
}

// k8sTree copies deploy/k8s into memory, so a test can change a file or
// add a kustomization that uses the others.
func k8sTree(t *testing.T) filesys.FileSystem {
	t.Helper()
	mem := filesys.MakeFsInMemory()
	err := filepath.WalkDir("k8s", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return mem.WriteFile("/"+filepath.ToSlash(path), raw)
	})
	if err != nil {
		t.Fatal(err)
	}
	return mem
}

// all decodes, strictly, every built object of a kind.
func all[T any](t *testing.T, objs []object, kind string) map[string]*T {
	t.Helper()
	out := map[string]*T{}
	for _, o := range objs {
		if o.kind == kind {
			out[o.name] = decode[T](t, kind+" "+o.name, o.yaml)
		}
	}
	return out
}

// podsOf are the pod templates of the built Deployments and Jobs, by
// "Kind name".
func podsOf(t *testing.T, objs []object) map[string]corev1.PodTemplateSpec {
	t.Helper()
	pods := map[string]corev1.PodTemplateSpec{}
	for name, d := range all[appsv1.Deployment](t, objs, "Deployment") {
		pods["Deployment "+name] = d.Spec.Template
	}
	for name, j := range all[batchv1.Job](t, objs, "Job") {
		pods["Job "+name] = j.Spec.Template
	}
	return pods
}

// jobRunning is the built Job whose container runs binary with args
// starting with sub.
func jobRunning(t *testing.T, objs []object, binary string, sub ...string) (*batchv1.Job, corev1.Container) {
	t.Helper()
	for _, j := range all[batchv1.Job](t, objs, "Job") {
		for _, c := range j.Spec.Template.Spec.Containers {
			b, s := commandOf(c.Command, c.Args)
			if b == binary && len(s) >= len(sub) && slices.Equal(s[:len(sub)], sub) {
				return j, c
			}
		}
	}
	t.Fatalf("no Job runs %s %s", binary, strings.Join(sub, " "))
	return nil, corev1.Container{}
}

// overlayTag is the tag the overlay gives paystream's image.
func overlayTag(t *testing.T, overlay string) string {
	t.Helper()
	var k kustomization
	strict(t, "k8s/overlays/"+overlay+"/kustomization.yaml", &k)
	for _, i := range k.Images {
		if i.Name == "paystream" {
			return i.NewTag
		}
	}
	t.Fatalf("overlay %s sets no tag for the paystream image", overlay)
	return ""
}

// TestKubernetesFirstApply builds each overlay as `kubectl apply -k`
// does and checks that, applied to a fresh cluster in the order
// docs/deploy.md gives, nothing waits for what never comes: a Namespace
// that holds every object; endpoints that name Services the overlay
// deploys (or, in prod, that the docs tell the user to set); a setup Job
// that registers the search attributes (or docs that say how, for
// Temporal Cloud) and applies the schema; Jobs named after the image tag
// so a new image makes new Jobs; and every Secret a pod cannot start
// without created, in the docs, before the apply.
func TestKubernetesFirstApply(t *testing.T) {
	disk := filesys.MakeFsOnDisk()
	doc := readDoc(t, "../docs/deploy.md")
	for _, overlay := range []string{"dev", "prod"} {
		t.Run(overlay, func(t *testing.T) {
			var k kustomization
			strict(t, "k8s/overlays/"+overlay+"/kustomization.yaml", &k)
			objs := kustomize(t, disk, "k8s/overlays/"+overlay)

			// One Namespace, holding everything else.
			namespaces := all[corev1.Namespace](t, objs, "Namespace")
			if len(namespaces) != 1 || namespaces[k.Namespace] == nil {
				t.Errorf("Namespaces %v, want only %s", keys(namespaces), k.Namespace)
			}
			for _, o := range objs {
				if o.kind != "Namespace" && o.namespace != k.Namespace {
					t.Errorf("%s %s is in namespace %q, not %s", o.kind, o.name, o.namespace, k.Namespace)
				}
			}

			// Every endpoint the configuration names is deployed here, or
			// is the user's to provide and the docs say to set it.
			config := all[corev1.ConfigMap](t, objs, "ConfigMap")["paystream-config"]
			if config == nil {
				t.Fatal("no paystream-config ConfigMap")
			}
			for _, ep := range endpoints(t, config.Data) {
				svc, local := clusterService(ep.host, k.Namespace)
				switch {
				case local:
					if _, ok := backingPods(t, objs, svc, ep.port); !ok {
						t.Errorf("%s names %s:%d, which no Service and Deployment of overlay %s serve", ep.key, ep.host, ep.port, overlay)
					}
				case overlay == "dev":
					t.Errorf("%s names %s, outside the cluster: the dev overlay must be self-contained", ep.key, ep.host)
				case !strings.Contains(doc, "`"+ep.key+"`"):
					t.Errorf("%s names %s, which the user provides, but docs/deploy.md does not say to set `%s`", ep.key, ep.host, ep.key)
				}
			}

			// Setup: the schema, and the search attributes.
			setup, schemaC := jobRunning(t, objs, "starter", "schema", "apply")
			for _, key := range []string{"PAYSTREAM_BIGQUERY_PROJECT", "PAYSTREAM_BIGQUERY_DATASET", "PAYSTREAM_BIGQUERY_ENDPOINT"} {
				if !fromConfig(schemaC, key) {
					t.Errorf("the schema container does not take %s from paystream-config", key)
				}
			}
			inits := setup.Spec.Template.Spec.InitContainers
			if overlay == "prod" {
				// Temporal Cloud: tcld or the UI, before the apply.
				if len(inits) != 0 {
					t.Errorf("prod's setup Job calls the operator API Temporal Cloud refuses: %+v", inits)
				}
				cloud := section(t, doc, "## Temporal Cloud")
				for _, d := range searchattr.Definitions() {
					if !strings.Contains(cloud, "`"+d.Name+"`") {
						t.Errorf("docs/deploy.md, Temporal Cloud, does not name search attribute %s", d.Name)
					}
				}
			} else {
				if len(inits) != 1 {
					t.Fatalf("setup Job %s has init containers %+v, want the search attributes step", setup.Name, inits)
				}
				checkSearchAttributeStep(t, inits[0])
			}

			// Jobs named after the image's tag, as valid names.
			tag := overlayTag(t, overlay)
			starter, starterC := jobRunning(t, objs, "starter", "start")
			// The partition settings reach starter start, which gives them
			// to each partition; the workers do not read them.
			if !slices.ContainsFunc(starterC.EnvFrom, func(f corev1.EnvFromSource) bool {
				return f.ConfigMapRef != nil && f.ConfigMapRef.Name == "paystream-start"
			}) {
				t.Error("the starter Job does not take the partition settings of ConfigMap paystream-start")
			}
			for _, j := range []*batchv1.Job{setup, starter} {
				if !strings.HasSuffix(j.Name, "-"+tag) {
					t.Errorf("Job %s is not named after image tag %s: a new image could not replace it", j.Name, tag)
				}
				// A Job name is a DNS subdomain of at most 63 characters
				// (its pods' job-name label holds it).
				if errs := validation.IsDNS1123Subdomain(j.Name); len(errs) > 0 || len(j.Name) > 63 {
					t.Errorf("Job name %s: %v, %d characters", j.Name, errs, len(j.Name))
				}
			}

			// Secrets a pod cannot start without: created before the apply.
			apply := strings.Index(doc, "kubectl apply -k deploy/k8s/overlays/"+overlay)
			if apply < 0 {
				t.Fatalf("docs/deploy.md does not apply overlay %s", overlay)
			}
			for pod, need := range requiredSecretKeys(podsOf(t, objs)) {
				for _, key := range need {
					create := regexp.MustCompile(`kubectl -n ` + k.Namespace + ` create secret generic paystream-secrets[^\n]*(\\\n[^\n]*)*--from-(literal|file)=` + key + `=`).FindStringIndex(doc)
					if create == nil || create[0] > apply {
						t.Errorf("%s needs key %s of Secret paystream-secrets, which docs/deploy.md does not create in %s before `kubectl apply -k deploy/k8s/overlays/%s`", pod, key, k.Namespace, overlay)
						continue
					}
					ns := strings.Index(doc, "kubectl apply -f deploy/k8s/overlays/"+overlay+"/namespace.yaml")
					if ns < 0 || ns > create[0] {
						t.Errorf("docs/deploy.md creates the Secret in %s before it creates the namespace (kubectl apply -f deploy/k8s/overlays/%s/namespace.yaml)", k.Namespace, overlay)
					}
				}
			}

			if overlay == "dev" {
				checkDevServers(t, objs, config)
			}
		})
	}
}

// checkSearchAttributeStep: the Temporal CLI, at the version tools/go.mod
// pins, creates exactly internal/searchattr's attributes in the
// configured Temporal and namespace.
func checkSearchAttributeStep(t *testing.T, c corev1.Container) {
	t.Helper()
	if want := "temporalio/temporal:" + strings.TrimPrefix(toolVersion(t, "github.com/temporalio/cli"), "v"); c.Image != want {
		t.Errorf("search attribute step runs %s, want %s (the CLI tools/go.mod pins)", c.Image, want)
	}
	if !slices.Equal(c.Args[:3], []string{"operator", "search-attribute", "create"}) {
		t.Errorf("search attribute step runs %v", c.Args)
	}
	var got []string
	for _, a := range c.Args[3:] {
		switch {
		case a == "--address=$(PAYSTREAM_TEMPORAL_ADDRESS)", a == "--namespace=$(PAYSTREAM_TEMPORAL_NAMESPACE)":
		case strings.HasPrefix(a, "--name="), strings.HasPrefix(a, "--type="):
			got = append(got, a)
		default:
			t.Errorf("search attribute step: unexpected argument %s", a)
		}
	}
	var want []string
	for _, d := range searchattr.Definitions() {
		want = append(want, "--name="+d.Name, "--type="+d.Type)
	}
	if !slices.Equal(got, want) {
		t.Errorf("search attribute step creates %v, want %v", got, want)
	}
	for _, key := range []string{"PAYSTREAM_TEMPORAL_ADDRESS", "PAYSTREAM_TEMPORAL_NAMESPACE"} {
		if !fromConfig(c, key) {
			t.Errorf("search attribute step does not take %s from paystream-config", key)
		}
	}
}

// checkDevServers: the dev overlay's Temporal is devstack's dev server
// (namespace, search attributes, settings), its emulator serves the
// configured project, and its topic Job creates the configured topic.
func checkDevServers(t *testing.T, objs []object, config *corev1.ConfigMap) {
	t.Helper()
	deps := all[appsv1.Deployment](t, objs, "Deployment")
	temporal := deps["temporal"]
	if temporal == nil {
		t.Fatal("the dev overlay deploys no temporal")
	}
	args := temporal.Spec.Template.Spec.Containers[0].Args
	if !containsRun(args, devstack.TemporalServerFlags()) {
		t.Errorf("dev Temporal runs %v, without devstack's flags %v", args, devstack.TemporalServerFlags())
	}
	if emu := deps["bigquery-emulator"]; emu == nil || !slices.Contains(emu.Spec.Template.Spec.Containers[0].Args, "--project="+config.Data["PAYSTREAM_BIGQUERY_PROJECT"]) {
		t.Errorf("the dev emulator does not serve project %s", config.Data["PAYSTREAM_BIGQUERY_PROJECT"])
	}
	for _, name := range []string{"temporal", "bigquery-emulator"} {
		if d := deps[name]; d != nil && !strings.HasPrefix(d.Spec.Template.Spec.Containers[0].Image, "paystream-tools:") {
			t.Errorf("dev %s runs %s, not the paystream-tools image (tools/Dockerfile: the patched emulator)", name, d.Spec.Template.Spec.Containers[0].Image)
		}
	}
	_, c := jobRunning(t, objs, "kafka-topics.sh")
	i := slices.Index(c.Args, "--topic")
	if i < 0 || i+1 >= len(c.Args) || c.Args[i+1] != "$(PAYSTREAM_TOPIC)" || !fromConfig(c, "PAYSTREAM_TOPIC") {
		t.Errorf("the topic Job %v does not create PAYSTREAM_TOPIC from paystream-config", c.Args)
	}
}

// TestJobNamesFollowTheImage: a new image tag in an overlay renames its
// Jobs, so `kubectl apply -k` creates new ones instead of failing on the
// old ones' unchangeable pod templates.
func TestJobNamesFollowTheImage(t *testing.T) {
	mem := k8sTree(t)
	names := func() []string {
		var n []string
		for _, o := range kustomize(t, mem, "/k8s/overlays/prod") {
			if o.kind == "Job" {
				n = append(n, o.name)
			}
		}
		slices.Sort(n)
		return n
	}
	before := names()
	path := "/k8s/overlays/prod/kustomization.yaml"
	raw, err := mem.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tag := overlayTag(t, "prod")
	if err := mem.WriteFile(path, []byte(strings.Replace(string(raw), "newTag: "+tag, "newTag: v9.8.7", 1))); err != nil {
		t.Fatal(err)
	}
	after := names()
	want := []string{"paystream-setup-v9.8.7", "paystream-starter-v9.8.7"}
	if !slices.Equal(after, want) || slices.Equal(before, after) {
		t.Errorf("Jobs %v with tag %s, %v with v9.8.7; want %v", before, tag, after, want)
	}
}

// TestMonitoringComponents adds each monitoring component to the dev
// overlay and checks that it scrapes the workers: the ServiceMonitor
// selects the worker Service's http port, the PodMonitoring the worker
// pods' (and opens the NetworkPolicy to GKE's collectors), the
// PrometheusRule carries deploy/prometheus/alerts.yml; the prometheus.io
// annotations stay for annotation-based scrapers.
func TestMonitoringComponents(t *testing.T) {
	mem := k8sTree(t)
	for _, component := range []string{"servicemonitor", "podmonitoring", "alerts"} {
		t.Run(component, func(t *testing.T) {
			dir := "/k8s/test-" + component
			k := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ../overlays/dev\ncomponents:\n  - ../components/" + component + "\n"
			if err := mem.WriteFile(dir+"/kustomization.yaml", []byte(k)); err != nil {
				t.Fatal(err)
			}
			objs := kustomize(t, mem, dir)
			worker := all[appsv1.Deployment](t, objs, "Deployment")["paystream-worker"]
			pod := worker.Spec.Template
			if a := pod.Annotations; a["prometheus.io/scrape"] != "true" || a["prometheus.io/port"] != "8080" || a["prometheus.io/path"] != pipeline.MetricsPath {
				t.Errorf("worker annotations %v: want the prometheus.io scrape annotations too", a)
			}
			switch component {
			case "servicemonitor":
				sms := all[monv1.ServiceMonitor](t, objs, "ServiceMonitor")
				svc := all[corev1.Service](t, objs, "Service")["paystream-worker"]
				if len(sms) != 1 {
					t.Fatalf("ServiceMonitors %v", keys(sms))
				}
				for _, sm := range sms {
					if !selects(t, sm.Spec.Selector.MatchLabels, svc.Labels) || len(sm.Spec.Endpoints) != 1 ||
						sm.Spec.Endpoints[0].Port != svc.Spec.Ports[0].Name || sm.Spec.Endpoints[0].Path != pipeline.MetricsPath {
						t.Errorf("ServiceMonitor %+v does not scrape %s of Service %s (labels %v, port %s)", sm.Spec, pipeline.MetricsPath, svc.Name, svc.Labels, svc.Spec.Ports[0].Name)
					}
				}
			case "podmonitoring":
				pms := all[podMonitoring](t, objs, "PodMonitoring")
				if len(pms) != 1 {
					t.Fatalf("PodMonitorings %v", keys(pms))
				}
				for _, pm := range pms {
					if !selects(t, pm.Spec.Selector.MatchLabels, pod.Labels) || len(pm.Spec.Endpoints) != 1 ||
						pm.Spec.Endpoints[0].Port.String() != pod.Spec.Containers[0].Ports[0].Name || pm.Spec.Endpoints[0].Path != pipeline.MetricsPath {
						t.Errorf("PodMonitoring %+v does not scrape %s of the worker pods", pm.Spec, pipeline.MetricsPath)
					}
				}
				for _, ns := range []string{"monitoring", "gmp-system"} {
					if !ingressAllowed(workerPolicies(t, objs, pod.Labels), ns, 8080) {
						t.Errorf("with PodMonitoring, namespace %s cannot reach the workers' 8080", ns)
					}
				}
			case "alerts":
				rules := all[monv1.PrometheusRule](t, objs, "PrometheusRule")
				if len(rules) != 1 {
					t.Fatalf("PrometheusRules %v", keys(rules))
				}
				var plain monv1.PrometheusRuleSpec
				strict(t, "prometheus/alerts.yml", &plain)
				for _, r := range rules {
					if !reflect.DeepEqual(r.Spec, plain) || len(plain.Groups) == 0 {
						t.Errorf("PrometheusRule %s differs from prometheus/alerts.yml", r.Name)
					}
				}
			}
		})
	}
}

// podMonitoring is the part of Google Managed Prometheus's PodMonitoring
// (monitoring.googleapis.com/v1) this component uses; decoding strictly
// into it catches a misspelt field.
type podMonitoring struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector  metav1.LabelSelector `json:"selector"`
		Endpoints []struct {
			Port     intstr.IntOrString `json:"port"`
			Path     string             `json:"path"`
			Interval string             `json:"interval"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// TestWorkerNetworkPolicy: in each overlay, the workers' http port
// admits the monitoring namespace only, and their egress allows what
// they dial and nothing wider: DNS, the configured Kafka brokers,
// Temporal and BigQuery (the emulator's pods in dev, HTTPS and the GKE
// metadata server that serves Workload Identity tokens in prod).
func TestWorkerNetworkPolicy(t *testing.T) {
	disk := filesys.MakeFsOnDisk()
	for _, overlay := range []string{"dev", "prod"} {
		t.Run(overlay, func(t *testing.T) {
			objs := kustomize(t, disk, "k8s/overlays/"+overlay)
			worker := all[appsv1.Deployment](t, objs, "Deployment")["paystream-worker"]
			pol := workerPolicies(t, objs, worker.Spec.Template.Labels)
			if !ingressAllowed(pol, "monitoring", 8080) {
				t.Error("the monitoring namespace cannot reach the workers' 8080")
			}
			for _, ns := range []string{"default", "paystream", "kube-system"} {
				if ingressAllowed(pol, ns, 8080) {
					t.Errorf("namespace %s reaches the workers' 8080", ns)
				}
			}
			if ingressAllowed(pol, "monitoring", 9999) {
				t.Error("the workers admit a port besides 8080")
			}

			config := all[corev1.ConfigMap](t, objs, "ConfigMap")["paystream-config"]
			ns := worker.Namespace
			var must []dest
			for _, p := range []corev1.Protocol{corev1.ProtocolUDP, corev1.ProtocolTCP} {
				must = append(must, dest{"DNS", p, 53, nil, ""})
			}
			for _, ep := range endpoints(t, config.Data) {
				d := dest{ep.key, corev1.ProtocolTCP, ep.port, nil, ""}
				if svc, local := clusterService(ep.host, ns); local {
					d.pod, _ = backingPods(t, objs, svc, ep.port)
				}
				must = append(must, d)
			}
			if config.Data["PAYSTREAM_BIGQUERY_ENDPOINT"] == "" {
				must = append(must, dest{"BigQuery", corev1.ProtocolTCP, 443, nil, ""},
					dest{"GKE metadata server (Dataplane V2)", corev1.ProtocolTCP, 80, nil, "169.254.169.254"},
					dest{"GKE metadata server", corev1.ProtocolTCP, 988, nil, "169.254.169.252"})
			} else {
				emu, _ := backingPods(t, objs, "bigquery-emulator", 9060)
				must = append(must, dest{"emulator Storage Write API", corev1.ProtocolTCP, 9060, emu, ""})
			}
			for _, d := range must {
				if !egressAllowed(pol, d) {
					t.Errorf("workers cannot reach %s (%s %d)", d.what, d.proto, d.port)
				}
			}
			for _, d := range []dest{{"SSH", corev1.ProtocolTCP, 22, nil, ""}, {"HTTP", corev1.ProtocolTCP, 80, nil, "203.0.113.7"}, {"Postgres", corev1.ProtocolTCP, 5432, nil, ""}} {
				if egressAllowed(pol, d) {
					t.Errorf("workers may dial %s (%s %d): the egress allow-list is too wide", d.what, d.proto, d.port)
				}
			}
		})
	}
}

// dest is a connection a worker makes: to pods with these labels in its
// namespace, to an IP, or (neither) to an address outside the cluster.
type dest struct {
	what  string
	proto corev1.Protocol
	port  int32
	pod   labels.Set
	ip    string
}

func workerPolicies(t *testing.T, objs []object, pod labels.Set) []*networkingv1.NetworkPolicy {
	t.Helper()
	var out []*networkingv1.NetworkPolicy
	for _, p := range all[networkingv1.NetworkPolicy](t, objs, "NetworkPolicy") {
		sel, err := metav1.LabelSelectorAsSelector(&p.Spec.PodSelector)
		if err != nil {
			t.Fatal(err)
		}
		if sel.Matches(pod) {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		t.Fatal("no NetworkPolicy selects the workers")
	}
	return out
}

func portMatches(ports []networkingv1.NetworkPolicyPort, proto corev1.Protocol, port int32) bool {
	if len(ports) == 0 {
		return true
	}
	for _, p := range ports {
		pp := corev1.ProtocolTCP
		if p.Protocol != nil {
			pp = *p.Protocol
		}
		if pp != proto || p.Port == nil {
			continue
		}
		end := p.Port.IntVal
		if p.EndPort != nil {
			end = *p.EndPort
		}
		if p.Port.IntVal <= port && port <= end {
			return true
		}
	}
	return false
}

// ingressAllowed: a pod of namespace ns (labelled with its name, as
// Kubernetes labels every namespace) may connect to port.
func ingressAllowed(pols []*networkingv1.NetworkPolicy, ns string, port int32) bool {
	nsLabels := labels.Set{"kubernetes.io/metadata.name": ns}
	for _, p := range pols {
		if !slices.Contains(p.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
			continue
		}
		for _, r := range p.Spec.Ingress {
			if !portMatches(r.Ports, corev1.ProtocolTCP, port) {
				continue
			}
			if len(r.From) == 0 {
				return true
			}
			for _, f := range r.From {
				if f.NamespaceSelector != nil && f.IPBlock == nil {
					sel, _ := metav1.LabelSelectorAsSelector(f.NamespaceSelector)
					if sel.Matches(nsLabels) {
						return true
					}
				}
			}
		}
	}
	return false
}

// egressAllowed: a worker may connect to d. No policy of type Egress
// leaves egress open.
func egressAllowed(pols []*networkingv1.NetworkPolicy, d dest) bool {
	if !slices.ContainsFunc(pols, func(p *networkingv1.NetworkPolicy) bool {
		return slices.Contains(p.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
	}) {
		return true
	}
	for _, p := range pols {
		if !slices.Contains(p.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) {
			continue
		}
		for _, r := range p.Spec.Egress {
			if !portMatches(r.Ports, d.proto, d.port) {
				continue
			}
			if len(r.To) == 0 {
				return true
			}
			for _, to := range r.To {
				switch {
				case to.PodSelector != nil && to.NamespaceSelector == nil && d.pod != nil:
					sel, _ := metav1.LabelSelectorAsSelector(to.PodSelector)
					if sel.Matches(d.pod) {
						return true
					}
				case to.IPBlock != nil && d.ip != "":
					_, cidr, err := net.ParseCIDR(to.IPBlock.CIDR)
					if err == nil && cidr.Contains(net.ParseIP(d.ip)) {
						return true
					}
				}
			}
		}
	}
	return false
}

// endpoint is a host and port the configuration makes paystream dial.
type endpoint struct {
	key, host string
	port      int32
}

func endpoints(t *testing.T, data map[string]string) []endpoint {
	t.Helper()
	var eps []endpoint
	add := func(key, hostport string) {
		host, port, err := net.SplitHostPort(hostport)
		n, perr := strconv.Atoi(port)
		if err != nil || perr != nil {
			t.Errorf("%s: %q is not host:port", key, hostport)
			return
		}
		eps = append(eps, endpoint{key, host, int32(n)})
	}
	for _, b := range strings.Split(data["PAYSTREAM_KAFKA_BROKERS"], ",") {
		add("PAYSTREAM_KAFKA_BROKERS", strings.TrimSpace(b))
	}
	add("PAYSTREAM_TEMPORAL_ADDRESS", data["PAYSTREAM_TEMPORAL_ADDRESS"])
	if e := data["PAYSTREAM_BIGQUERY_ENDPOINT"]; e != "" {
		u, err := url.Parse(e)
		if err != nil {
			t.Fatalf("PAYSTREAM_BIGQUERY_ENDPOINT %q: %v", e, err)
		}
		add("PAYSTREAM_BIGQUERY_ENDPOINT", u.Host)
	}
	return eps
}

// clusterService is the Service a cluster-local host names, as a pod of
// namespace ns resolves it; local is false for a host outside the cluster.
func clusterService(host, ns string) (svc string, local bool) {
	h := strings.TrimSuffix(strings.TrimSuffix(host, ".cluster.local"), ".svc")
	parts := strings.Split(h, ".")
	switch {
	case !strings.Contains(host, "."):
		return host, true
	case len(parts) == 2 && host != h:
		if parts[1] != ns {
			return host, true // another namespace: nothing here serves it
		}
		return parts[0], true
	}
	return "", false
}

// backingPods are the labels of the pods a Service of the build sends
// port to, if a Deployment's pods serve it.
func backingPods(t *testing.T, objs []object, svc string, port int32) (labels.Set, bool) {
	t.Helper()
	s := all[corev1.Service](t, objs, "Service")[svc]
	if s == nil {
		return nil, false
	}
	var target intstr.IntOrString
	for _, p := range s.Spec.Ports {
		if p.Port == port {
			target = p.TargetPort
		}
	}
	if target.String() == "" || target.String() == "0" {
		return nil, false
	}
	for _, d := range all[appsv1.Deployment](t, objs, "Deployment") {
		pod := labels.Set(d.Spec.Template.Labels)
		if !selects(t, s.Spec.Selector, pod) {
			continue
		}
		for _, c := range d.Spec.Template.Spec.Containers {
			for _, cp := range c.Ports {
				if cp.Name == target.String() || cp.ContainerPort == target.IntVal {
					return pod, true
				}
			}
		}
	}
	return nil, false
}

// fromConfig: the container takes variable key from paystream-config's key.
func fromConfig(c corev1.Container, key string) bool {
	for _, e := range c.Env {
		if e.Name == key && e.ValueFrom != nil && e.ValueFrom.ConfigMapKeyRef != nil &&
			e.ValueFrom.ConfigMapKeyRef.Name == "paystream-config" && e.ValueFrom.ConfigMapKeyRef.Key == key {
			return true
		}
	}
	for _, f := range c.EnvFrom {
		if f.ConfigMapRef != nil && f.ConfigMapRef.Name == "paystream-config" {
			return true
		}
	}
	return false
}

// requiredSecretKeys are, by pod, the keys of paystream-secrets without
// which the pod cannot start (references not marked optional).
func requiredSecretKeys(pods map[string]corev1.PodTemplateSpec) map[string][]string {
	need := map[string][]string{}
	for name, pod := range pods {
		for _, c := range slices.Concat(pod.Spec.InitContainers, pod.Spec.Containers) {
			for _, e := range c.Env {
				if r := e.ValueFrom; r != nil && r.SecretKeyRef != nil && (r.SecretKeyRef.Optional == nil || !*r.SecretKeyRef.Optional) {
					need[name] = append(need[name], r.SecretKeyRef.Key)
				}
			}
		}
		for _, v := range pod.Spec.Volumes {
			if s := v.Secret; s != nil && (s.Optional == nil || !*s.Optional) {
				for _, item := range s.Items {
					need[name] = append(need[name], item.Key)
				}
			}
		}
	}
	return need
}

// containsRun: want appears in args in order, one after the other.
func containsRun(args, want []string) bool {
	for i := 0; i+len(want) <= len(args); i++ {
		if slices.Equal(args[i:i+len(want)], want) {
			return true
		}
	}
	return false
}

// toolVersion is the version tools/go.mod requires of module.
func toolVersion(t *testing.T, module string) string {
	t.Helper()
	f, err := os.Open("../tools/go.mod")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if fields := strings.Fields(s.Text()); len(fields) >= 2 && fields[0] == module {
			return fields[1]
		}
	}
	t.Fatalf("tools/go.mod does not require %s", module)
	return ""
}

func readDoc(t *testing.T, path string) string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

// section is the text of doc's section under heading, to the next
// heading of the same level.
func section(t *testing.T, doc, heading string) string {
	t.Helper()
	i := strings.Index(doc, "\n"+heading+"\n")
	if i < 0 {
		t.Fatalf("no section %q", heading)
	}
	rest := doc[i+len(heading)+2:]
	level := heading[:strings.Index(heading, " ")+1]
	if j := strings.Index(rest, "\n"+level); j >= 0 {
		rest = rest[:j]
	}
	return rest
}

func keys[V any](m map[string]V) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	slices.Sort(k)
	return k
}
