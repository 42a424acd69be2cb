-- m003_hypotheses: the user's own hypotheses (triage hypotheses add FILE) and the posterior log.
--
-- A user hypothesis is kept as the YAML text the user wrote, re-validated whenever it is read,
-- so a hypothesis added by an older triage is checked by the rules of the one reading it.
-- The posterior log has one row per distinct state of the evidence that was scored
-- (`digest` of the runs, incidents and user hypotheses), so `triage hypotheses log --recorded`
-- shows how the answer moved as runs and trials were added, without duplicates.

CREATE TABLE user_hypotheses (
    id        INTEGER PRIMARY KEY,
    name      TEXT NOT NULL UNIQUE,
    source    TEXT NOT NULL,            -- the file it was added from, as given
    yaml      TEXT NOT NULL,
    added_at  TEXT NOT NULL
);

CREATE TABLE hypothesis_log (
    id              INTEGER PRIMARY KEY,
    at              TEXT NOT NULL,
    runs            INTEGER NOT NULL,
    incidents       INTEGER NOT NULL,
    digest          TEXT NOT NULL UNIQUE,
    p_one_bug       REAL NOT NULL,
    best            TEXT NOT NULL,      -- name of the best explanation
    best_posterior  REAL NOT NULL,
    result          TEXT NOT NULL       -- the triage.hypotheses/1 object, as printed by --json
);
