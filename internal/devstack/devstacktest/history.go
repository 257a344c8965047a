package devstacktest

import (
	"context"
	"strings"
	"testing"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/protobuf/encoding/protojson"
)

// HistoryJSON is a workflow's latest run's history as the SDK's replayer
// reads it ({"events":[...]}): for recording histories CI replays, and
// for searching them.
func HistoryJSON(t testing.TB, tc client.Client, workflowID string) string {
	t.Helper()
	it := tc.GetWorkflowHistory(context.Background(), workflowID, "", false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	var events []string
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		b, err := protojson.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, string(b))
	}
	return `{"events":[` + strings.Join(events, ",") + `]}`
}
