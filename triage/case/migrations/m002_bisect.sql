-- m002_bisect: bisection sessions and their trials (written only by triage/case/bisect.py).
--
-- A session is one `triage bisect step|seed|ranks` search. `spec` is the JSON of everything
-- needed to resume it (command template, axis values, options), so `resume` and `replay` need
-- nothing but the session id. A trial row is written, in its own transaction, as soon as the
-- trial ends and before the next trial starts: a crash or Ctrl-C loses at most the trials that
-- were running. `seq` is the order trials finished in; `key` is the point's identity on the
-- axis as JSON (an index, a seed, a list of element indices), used to group repeats.

CREATE TABLE bisect_sessions (
    id          INTEGER PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('step', 'seed', 'ranks')),
    axis        TEXT NOT NULL,      -- step, value, seed, ranks, hosts
    spec        TEXT NOT NULL,      -- JSON: template, values, options
    status      TEXT NOT NULL CHECK (status IN ('running', 'done', 'stopped', 'error')),
    result      TEXT,               -- JSON of the last answer (the --json object)
    folder      TEXT NOT NULL,      -- where trial outputs live
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

CREATE TABLE bisect_trials (
    session_id  INTEGER NOT NULL REFERENCES bisect_sessions(id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL,   -- 1-based, order of completion
    key         TEXT NOT NULL,      -- JSON identity of the point on the axis
    point       TEXT NOT NULL,      -- JSON {placeholder: substituted string}
    outcome     TEXT NOT NULL CHECK (outcome IN ('good', 'bad', 'skip', 'unrelated', 'flaky', 'error')),
    exit_code   INTEGER,
    seconds     REAL NOT NULL,
    timed_out   INTEGER NOT NULL CHECK (timed_out IN (0, 1)),
    output      TEXT,               -- captured output, relative to the session folder
    signatures  TEXT NOT NULL,      -- JSON list of signature ids the scan found
    note        TEXT,
    finished_at TEXT NOT NULL,
    PRIMARY KEY (session_id, seq)
) WITHOUT ROWID;
