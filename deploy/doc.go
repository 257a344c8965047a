// Package deploy holds paystream's deployment files — the Kubernetes
// manifests (k8s/), the Grafana dashboard (grafana/) — and the tests that
// decode them, with the root's Dockerfile and docker-compose.yml, against
// the types and the settings the binaries really read.
package deploy
