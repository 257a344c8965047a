package main

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// TestLogLinesCarrySeverityAndAreAllKept: each line names its level as
// severity, as log pipelines read it, and a burst of identical lines is
// written whole, not sampled.
func TestLogLinesCarrySeverityAndAreAllKept(t *testing.T) {
	path := filepath.Join(t.TempDir(), "worker.log")
	cfg := logConfig(zapcore.InfoLevel)
	cfg.OutputPaths = []string{path}
	log, err := cfg.Build()
	if err != nil {
		t.Fatal(err)
	}
	const burst = 500
	for i := range burst {
		log.Info("load done", zap.Int("i", i))
	}
	log.Warn("slow")
	_ = log.Sync()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	severities := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatal(err)
		}
		if _, ok := line["level"]; ok {
			t.Fatalf("a line still says level: %s", sc.Bytes())
		}
		severities[line["severity"].(string)]++
	}
	if severities["INFO"] != burst || severities["WARN"] != 1 {
		t.Errorf("lines by severity %v, want %d INFO and 1 WARN", severities, burst)
	}
}
