//! Where a whole-job bench runs: one instance on SQLite (the default), or
//! several instances on one PostgreSQL database created for the run and
//! dropped after it, each instance with a data directory of its own (as a
//! fleet on several machines would be).

use sqlx::{Connection, Executor, PgConnection};

use super::BenchError;

/// `--instances` and `--postgres`.
#[derive(Debug, Clone, clap::Args)]
pub struct FleetOptions {
    /// Instances serving and dispatching (more than one needs --postgres).
    #[arg(long, default_value_t = 1)]
    pub instances: u32,
    /// A PostgreSQL server's URL (a database the bench may connect to, e.g.
    /// postgres://postgres@127.0.0.1:5432/test): the run creates a database
    /// of its own there and drops it afterwards.
    #[arg(long)]
    pub postgres: Option<String>,
}

impl Default for FleetOptions {
    fn default() -> Self {
        Self { instances: 1, postgres: None }
    }
}

impl FleetOptions {
    /// Refuses a fleet without a database to share.
    pub fn check(&self) -> Result<(), BenchError> {
        if self.instances == 0 || (self.instances > 1 && self.postgres.is_none()) {
            return Err(BenchError::Measure("--instances above 1 needs --postgres (one database for the fleet)".into()));
        }
        Ok(())
    }
}

/// A database made for one run (or one test), dropped with its connections
/// when this is dropped.
pub struct ScratchDatabase {
    /// Its URL, for `DATABASE_URL`.
    pub url: String,
    admin: String,
    name: String,
}

impl ScratchDatabase {
    /// Creates an empty database on the server `admin` (a URL naming a
    /// database to connect to for the `CREATE DATABASE`).
    pub async fn create(admin: &str) -> Result<Self, sqlx::Error> {
        let name = format!("scribe_scratch_{}", uuid::Uuid::now_v7().simple());
        let mut conn = PgConnection::connect(admin).await?;
        conn.execute(format!("CREATE DATABASE {name}").as_str()).await?;
        conn.close().await.ok();
        let (base, _) = admin.rsplit_once('/').ok_or_else(|| sqlx::Error::Configuration("the URL names no database".into()))?;
        Ok(Self { url: format!("{base}/{name}"), admin: admin.to_string(), name })
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
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
            eprintln!("could not drop the scratch database {}", self.name);
        }
    }
}
