-- m004_frames: the stack of an occurrence whose log line ends a traceback.
--
-- `frames` is a JSON array of [file, function, line] (line null when the trace has none),
-- innermost last, as the scanner read it; NULL when the line has no traceback (a watchdog
-- timeout, a Slurm message). Runs ingested before this migration keep NULL: their logs were
-- not read for it, and a case never re-reads logs on its own.

ALTER TABLE occurrences ADD COLUMN frames TEXT;
