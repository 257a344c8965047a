package main

import (
	"fmt"
	"strings"

	"github.com/paystream/paystream/internal/config"
	"github.com/paystream/paystream/internal/operator"
)

// keptSettings says which of the settings given to start (on the command
// line or by variable) a running partition does not have, and how to
// change them; "" when it has them all, or none was given.
func keptSettings(r operator.StartResult, cfg config.Config, args commandArgs) string {
	if r.Running == nil {
		return ""
	}
	var kept []string
	differ := func(flag string, running, wanted any) {
		if args.given[flag] && fmt.Sprint(running) != fmt.Sprint(wanted) {
			kept = append(kept, fmt.Sprintf("--%s %v (%v given)", flag, running, wanted))
		}
	}
	differ("max-records", r.Running.MaxRecords, args.tuning.MaxRecords)
	differ("max-bytes", r.Running.MaxBytes, args.tuning.MaxBytes)
	differ("write-mode", r.Running.WriteMode, cfg.WriteMode)
	differ("allowed-lateness", r.Running.AllowedLateness, cfg.AllowedLateness)
	differ("max-window-ids", r.Running.MaxWindowIDs, cfg.MaxWindowIDs)
	if args.given["schema-registry"] && cfg.SchemaRegistry != "" && !r.Running.ReadsRegistry {
		kept = append(kept, "reading no Schema Registry records (--schema-registry given)")
	}
	if len(kept) == 0 {
		return ""
	}
	how := fmt.Sprintf("to change them, starter stop (the whole topic, partitions added later included) or starter drain --partition %d, then starter start with them", r.Partition)
	if onlyBatchSize(kept) {
		how = "starter set-batch changes the batch size while it runs"
	}
	return fmt.Sprintf("it keeps %s; %s", strings.Join(kept, ", "), how)
}

func onlyBatchSize(kept []string) bool {
	for _, k := range kept {
		if !strings.HasPrefix(k, "--max-records ") && !strings.HasPrefix(k, "--max-bytes ") {
			return false
		}
	}
	return true
}
