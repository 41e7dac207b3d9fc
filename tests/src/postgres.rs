//! Throwaway PostgreSQL databases for tests: each test creates its own on
//! the server every machine here runs (127.0.0.1:5432, trust auth) and
//! drops it when done, so tests run in parallel and leave nothing behind.

use scribe_host::bench::ScratchDatabase;

/// The server's maintenance database; `SCRIBE_TEST_POSTGRES_URL` overrides.
const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A database created for one test, dropped (with its connections) on drop.
pub struct TestDatabase {
    /// Its URL, for `DATABASE_URL` or `PostgresStore::open`.
    pub url: String,
    _database: ScratchDatabase,
}

impl TestDatabase {
    /// Creates a fresh, empty database. Panics, naming the server, if
    /// PostgreSQL cannot be reached: these tests need it.
    pub async fn create() -> Self {
        let admin = std::env::var("SCRIBE_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_string());
        let database = ScratchDatabase::create(&admin)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {admin} is needed by this test: {e}"));
        Self { url: database.url.clone(), _database: database }
    }
}
