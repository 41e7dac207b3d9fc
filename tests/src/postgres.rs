//! Throwaway PostgreSQL databases for tests: each test creates its own on
//! the server every machine here runs (127.0.0.1:5432, trust auth) and
//! drops it when done, so tests run in parallel and leave nothing behind.

use sqlx::{Connection, Executor, PgConnection};

/// The server's maintenance database; `SCRIBE_TEST_POSTGRES_URL` overrides.
const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

fn admin_url() -> String {
    std::env::var("SCRIBE_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_string())
}

/// A database created for one test, dropped (with its connections) on drop.
pub struct TestDatabase {
    /// Its URL, for `DATABASE_URL` or `PostgresStore::open`.
    pub url: String,
    name: String,
}

impl TestDatabase {
    /// Creates a fresh, empty database. Panics, naming the server, if
    /// PostgreSQL cannot be reached: these tests need it.
    pub async fn create() -> Self {
        let admin = admin_url();
        let name = format!("scribe_test_{}", uuid::Uuid::now_v7().simple());
        let mut conn = PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {admin} is needed by this test: {e}"));
        conn.execute(format!("CREATE DATABASE {name}").as_str()).await.expect("creating the test database");
        conn.close().await.ok();
        let (base, _) = admin.rsplit_once('/').expect("the admin URL names a database");
        Self { url: format!("{base}/{name}"), name }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin, name) = (admin_url(), self.name.clone());
        // Drop runs outside any runtime's async context: a thread of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime.block_on(async {
                let mut conn = PgConnection::connect(&admin).await.ok()?;
                conn.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str()).await.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(_))) {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}
