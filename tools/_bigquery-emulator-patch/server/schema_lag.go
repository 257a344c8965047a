package server

import (
	"encoding/json"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/goccy/bigquery-emulator/types"
	bigqueryv2 "google.golang.org/api/bigquery/v2"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// addedAt is when tables.patch added each column, by
// project/dataset/table/column (paystream patch).
var addedAt sync.Map

func columnsAdded(project, dataset, table string, columns []string) {
	now := time.Now()
	for _, c := range columns {
		addedAt.Store(project+"/"+dataset+"/"+table+"/"+strings.ToLower(c), now)
	}
}

// streamSchemaLag is how long a column added to a table stays unseen by
// the Storage Write API: BigQuery documents that streams can take
// minutes to see a new schema. PAYSTREAM_EMULATOR_STREAM_SCHEMA_LAG (a
// Go duration; none by default) lets tests hold the local stack to that.
func streamSchemaLag() time.Duration {
	d, _ := time.ParseDuration(os.Getenv("PAYSTREAM_EMULATOR_STREAM_SCHEMA_LAG"))
	return d
}

// streamSchema is table's schema as the Storage Write API sees it now:
// without the columns added within the lag (paystream patch).
func streamSchema(project, dataset, table string, t *bigqueryv2.Table) *bigqueryv2.Table {
	lag := streamSchemaLag()
	if lag <= 0 || t.Schema == nil {
		return t
	}
	seen := *t
	schema := *t.Schema
	schema.Fields = nil
	for _, f := range t.Schema.Fields {
		if at, ok := addedAt.Load(project + "/" + dataset + "/" + table + "/" + strings.ToLower(f.Name)); ok && time.Since(at.(time.Time)) < lag {
			continue
		}
		schema.Fields = append(schema.Fields, f)
	}
	seen.Schema = &schema
	return &seen
}

// extraFields are the writer schema's fields the table lacks (paystream
// patch).
func extraFields(msg protoreflect.MessageDescriptor, t *bigqueryv2.Table) []string {
	if msg == nil || t.Schema == nil {
		return nil
	}
	var extra []string
	fields := msg.Fields()
	for i := 0; i < fields.Len(); i++ {
		name := string(fields.Get(i).Name())
		found := false
		for _, f := range t.Schema.Fields {
			if strings.EqualFold(f.Name, name) {
				found = true
				break
			}
		}
		if !found {
			extra = append(extra, name)
		}
	}
	return extra
}

// jsonAsValues parses the values of JSON columns, which the Storage Write
// API takes as their JSON text, into the values a load job stores for
// them; upstream stored the text as a JSON string (paystream patch).
func jsonAsValues(fields []*bigqueryv2.TableFieldSchema, rows types.Data) {
	for _, f := range fields {
		if f.Type != "JSON" || f.Mode == "REPEATED" {
			continue
		}
		for _, row := range rows {
			if text, ok := row[f.Name].(string); ok {
				var v interface{}
				d := json.NewDecoder(strings.NewReader(text))
				d.UseNumber() // as load jobs read numbers
				if d.Decode(&v) == nil {
					row[f.Name] = v
				}
			}
		}
	}
}
