//! A fresh PostgreSQL database per test, on the server of `SLUICE_TEST_POSTGRES_URL`.

use sqlx::Connection;

fn admin_url() -> String {
    std::env::var("SLUICE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database created for one test; [`TestDatabase::drop`] removes it.
pub struct TestDatabase {
    /// Its URL.
    pub url: String,
    name: String,
}

impl TestDatabase {
    /// Creates a database named `<prefix>_<random>`, or returns `None` (with a note) where no
    /// server answers; under `CI=true` a missing server fails the test.
    pub async fn create(prefix: &str) -> Option<Self> {
        let admin = admin_url();
        let mut conn = match sqlx::PgConnection::connect(&admin).await {
            Ok(c) => c,
            Err(e) => {
                assert_ne!(
                    std::env::var("CI").as_deref(),
                    Ok("true"),
                    "CI=true but PostgreSQL at {admin} is unreachable: {e}"
                );
                eprintln!("SKIPPED: cannot reach PostgreSQL at {admin}: {e}");
                return None;
            }
        };
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
        Some(Self { url, name })
    }

    /// Removes the database (closing whatever is still connected to it).
    pub async fn drop(self) {
        if let Ok(mut conn) = sqlx::PgConnection::connect(&admin_url()).await {
            let _ = sqlx::query(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut conn)
            .await;
        }
    }
}
