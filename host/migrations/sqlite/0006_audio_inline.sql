-- Small uploads (SCRIBE_AUDIO_INLINE_MAX_BYTES) kept in the database: a
-- row goes into the commit the writer shares among the writes waiting,
-- where a file would cost a create and two fsyncs of its own.
-- stored_at (ms since the epoch) is re-stamped by every put of the same
-- content, so retention never removes audio a submit has just stored.
CREATE TABLE audio_inline (
    sha256 TEXT PRIMARY KEY NOT NULL,
    data BLOB NOT NULL,
    stored_at INTEGER NOT NULL
);
CREATE INDEX audio_inline_stored_at ON audio_inline (stored_at);
