-- One row per micro-batch, written after its other tables (docs/design.md §3,
-- invariant 6). records = end_offset - start_offset
--   = loaded + duplicates + errors + late + control + aborted + skipped:
-- control counts transaction markers, aborted the records of aborted
-- transactions (read_committed: neither is a payment), skipped the offsets
-- that hold no record (compaction).
CREATE TABLE IF NOT EXISTS `{{project}}.{{dataset}}.batch_ledger` (
  batch_id           STRING    NOT NULL,
  kafka_topic        STRING    NOT NULL,
  kafka_partition    INT64     NOT NULL,
  start_offset       INT64     NOT NULL, -- inclusive
  end_offset         INT64     NOT NULL, -- exclusive
  records            INT64     NOT NULL,
  loaded             INT64     NOT NULL,
  duplicates         INT64     NOT NULL,
  errors             INT64     NOT NULL, -- rejected other than late
  late               INT64     NOT NULL,
  skipped            INT64     NOT NULL,
  control            INT64,
  aborted            INT64,
  amount_by_currency ARRAY<STRUCT<currency STRING, amount NUMERIC, events INT64>>,
  -- Where the partition's dedup window starts after this batch, so that
  -- `starter start` can resume a partition exactly (docs/design.md §4).
  next_window_start  INT64     NOT NULL,
  next_window_newest STRING,             -- RFC 3339, nanoseconds kept; NULL before any valid event
  -- The raises of the window's floor (max_window_ids) a rebuild from
  -- next_window_start replays; empty unless the window hit its bound.
  next_window_floors ARRAY<STRUCT<from_offset INT64, floor STRING>>, -- floor: RFC 3339, nanoseconds kept
  -- What the batch decided with, so that a batch run again (pending,
  -- backfill) decides alike; NULL in rows written before they existed.
  allowed_lateness_ns INT64,
  max_window_ids     INT64,             -- 0: no bound
  -- The partition's Schema Registry verdicts after this batch
  -- (contract.Schemas as JSON); NULL when it reads no wire-format records.
  schemas            STRING,
  loaded_at          TIMESTAMP NOT NULL
)
PARTITION BY DATE(loaded_at)
CLUSTER BY kafka_partition, start_offset;
