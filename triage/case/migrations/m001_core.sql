-- m001_core: runs, their inputs, ranks, labels; signatures and their occurrences.
--
-- A run is one launch attempt. Its identity is the content hash of its input files
-- (`content_hash`, UNIQUE), so ingesting the same files twice adds nothing.
-- Everything a run owns references runs(id) ON DELETE CASCADE: deleting a run removes it whole.
-- `n_occurrences`, `n_ranks` and `n_inputs` are written with the run in the same transaction;
-- they let a check prove that no half run exists (counts match rows).

CREATE TABLE runs (
    id              INTEGER PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    content_hash    TEXT NOT NULL UNIQUE,  -- every input file, triage-run.yaml included
    logs_hash       TEXT NOT NULL,         -- the same without triage-run.yaml
    ingested_at     TEXT NOT NULL,
    world_size      INTEGER,
    steps_completed INTEGER,            -- highest step any rank reported
    gpu_steps       INTEGER NOT NULL,   -- exposure: sum over ranks of steps completed
    seconds         REAL,               -- wall time of the run, when known
    started         TEXT,
    ended           TEXT,
    seed            TEXT,
    version         TEXT,
    failed          INTEGER NOT NULL CHECK (failed IN (0, 1)),
    n_inputs        INTEGER NOT NULL,
    n_ranks         INTEGER NOT NULL,
    n_occurrences   INTEGER NOT NULL
);

CREATE TABLE run_labels (
    run_id  INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    key     TEXT NOT NULL,
    value   TEXT NOT NULL,
    PRIMARY KEY (run_id, key)
) WITHOUT ROWID;

CREATE TABLE run_inputs (
    run_id  INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    path    TEXT NOT NULL,
    bytes   INTEGER NOT NULL,
    sha256  TEXT NOT NULL,
    PRIMARY KEY (run_id, path)
) WITHOUT ROWID;

CREATE TABLE run_ranks (
    run_id    INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    rank      INTEGER NOT NULL,
    host      TEXT,
    last_step INTEGER,
    exit_code INTEGER,
    steps     INTEGER NOT NULL,          -- exposure of this rank (steps completed)
    PRIMARY KEY (run_id, rank)
) WITHOUT ROWID;

CREATE INDEX runs_logs_hash ON runs(logs_hash);
CREATE INDEX run_inputs_sha ON run_inputs(sha256);
CREATE INDEX run_ranks_host ON run_ranks(host);

CREATE TABLE signatures (
    id        TEXT PRIMARY KEY,          -- "sig1:..." from the scanner, stable across runs
    family    TEXT NOT NULL,
    template  TEXT NOT NULL,
    playbook  TEXT
) WITHOUT ROWID;

CREATE TABLE occurrences (
    id         INTEGER PRIMARY KEY,
    run_id     INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    signature  TEXT NOT NULL REFERENCES signatures(id),
    family     TEXT NOT NULL,
    role       TEXT NOT NULL CHECK (role IN ('root', 'symptom', 'independent')),
    rank       INTEGER,
    host       TEXT,
    step       INTEGER,
    time       TEXT,
    message    TEXT NOT NULL,
    path       TEXT NOT NULL,
    line       INTEGER NOT NULL,
    why        TEXT NOT NULL,
    playbook   TEXT,
    seq        INTEGER NOT NULL          -- order in the scan (first occurrence order)
);

CREATE INDEX occurrences_run ON occurrences(run_id, seq);
CREATE INDEX occurrences_signature ON occurrences(signature, run_id);
